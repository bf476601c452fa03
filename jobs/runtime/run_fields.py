"""The run fields every job config shares: the run id (scheduler ids welcome), the reject-ratio
policy and the progress line. Each job's `run` section extends `JobRunFields` with its own fields."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from qbatch.connectors.qdrant_config import FORBIDDEN_NAME_CHARS

_RUN_ID_CLEAN = re.compile(r"[^A-Za-z0-9._-]+")


def normalise_run_id(raw: str) -> str:
    """Make a scheduler run id (e.g. 'scheduled__2026-11-28T00:00:00+00:00') safe inside a Qdrant
    collection name and a path: forbidden characters become '-'. Deterministic, so a retry maps
    to the same run."""
    cleaned = _RUN_ID_CLEAN.sub("-", raw.strip()).strip("-.")
    if not cleaned or len(cleaned) > 120 or any(c in FORBIDDEN_NAME_CHARS for c in cleaned):
        raise ValueError(f"run.run_id {raw!r} cannot be made a valid collection-name suffix")
    return cleaned


class JobRunFields(BaseModel):
    """Base of every job's `run` section."""

    model_config = ConfigDict(extra="forbid")

    run_id: str | None = Field(None, description="run id (scheduler run ids welcome; ':' etc. become '-'); "
                                                 "none = derived from the run date")
    max_reject_ratio: float = Field(0.05, ge=0.0, le=1.0, description="exit non-zero when rejected/read exceeds this")
    progress: bool = Field(True, description="show a progress bar on a terminal")

    @field_validator("run_id")
    @classmethod
    def _valid_run_id(cls, v: str | None) -> str | None:
        return None if v is None else normalise_run_id(v)
