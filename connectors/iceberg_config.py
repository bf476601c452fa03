"""The typed config of an Iceberg result table: which catalog (pyiceberg's rest, glue, hive or sql), its
properties, where secrets come from, and which tables. The catalog owns the tables' locations."""

from __future__ import annotations

import os
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_SECRET_PROPERTY = re.compile(r"token|secret|password|credential|access-key|session", re.I)


class IcebergCatalogConfig(BaseModel):
    """`output.catalog`: a pyiceberg catalog and the rerank job's two tables in it."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["rest", "glue", "hive", "sql"] = Field(..., description="pyiceberg catalog type")
    name: str = Field("qbatch", description="catalog name (pyiceberg also reads ~/.pyiceberg.yaml and "
                                            "PYICEBERG_CATALOG__<NAME>__* variables for it; these properties win)")
    properties: dict[str, str] = Field(
        default_factory=dict, description="catalog properties without secrets, e.g. uri, warehouse, glue.region, "
                                          "s3.endpoint (object-store settings default to output.storage)")
    secret_env: dict[str, str] = Field(
        default_factory=dict, description="catalog property -> environment variable holding its value, for "
                                          "secrets (token, credential, s3.secret-access-key); never logged")
    namespace: str = Field("qbatch", description="namespace of the tables (created if missing)")
    table: str = Field("rerank_results", description="the results table: one snapshot per run date's commit")
    metrics_table: str = Field("rerank_metrics", description="the per-run metrics table: one row per run date")
    keep_snapshots: int = Field(
        0, ge=0, description="after each commit, expire all but the last N snapshots of the results table "
                             "(0 = never expire; time travel reaches back as far as snapshots are kept)")

    @field_validator("properties")
    @classmethod
    def _no_secrets_inline(cls, v: dict[str, str]) -> dict[str, str]:
        inline = sorted(k for k in v if _SECRET_PROPERTY.search(k))
        if inline:
            raise ValueError(f"output.catalog.properties holds secret properties {inline}: name an environment "
                             "variable for each in output.catalog.secret_env instead")
        return v

    def resolved_secrets(self) -> dict[str, str]:
        """The secret properties, read from their environment variables (ValueError naming a missing one)."""
        out = {}
        for prop, env in self.secret_env.items():
            value = os.environ.get(env)
            if not value:
                raise ValueError(f"output.catalog.secret_env[{prop!r}]: the environment variable {env} is unset or empty")
            out[prop] = value
        return out
