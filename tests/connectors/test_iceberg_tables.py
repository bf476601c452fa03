"""The Iceberg pieces that need no job run: catalog properties (secrets from the environment, object-store
defaults), the contract check, and the ledger of files written but never committed."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from pydantic import SecretStr, ValidationError

from qbatch.common.errors import ConfigError
from qbatch.connectors.iceberg_config import IcebergCatalogConfig
from qbatch.connectors.iceberg_tables import (RESULTS_SCHEMA, IcebergResults, PendingFiles, catalog_properties,
                                              embedded_paths, ensure_table, open_catalog)
from qbatch.connectors.source_config import ObjectStoreOptions

DAY = dt.date(2026, 11, 27)


def test_catalog_properties_take_secrets_from_the_environment_and_storage_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("QB_TOKEN", "tok-123")
    cfg = IcebergCatalogConfig(type="rest", name="lake", properties={"uri": "http://c", "s3.region": "eu-west-1"},
                               secret_env={"token": "QB_TOKEN"})
    storage = ObjectStoreOptions(endpoint_url="http://s3", region="us-east-1", access_key_id=SecretStr("AK"),
                                 secret_access_key=SecretStr("SK"))
    name, props = catalog_properties(cfg, "s3://b/out", storage)
    assert name == "lake" and props["token"] == "tok-123" and props["s3.endpoint"] == "http://s3"
    assert props["s3.region"] == "eu-west-1" and props["s3.secret-access-key"] == "SK"  # the config's own wins
    with pytest.raises(ValidationError, match="secret_env"):
        IcebergCatalogConfig(type="rest", properties={"token": "inline"})
    monkeypatch.delenv("QB_TOKEN")
    with pytest.raises(ValueError, match="QB_TOKEN"):
        catalog_properties(cfg, "s3://b/out", None)
    database, warehouse = embedded_paths(str(tmp_path / "out"))
    assert database.endswith("out/_iceberg/catalog.db") and warehouse.endswith("out/_iceberg/warehouse")


def test_a_required_column_outside_the_contract_or_another_spec_is_refused(tmp_path):
    from pyiceberg.schema import Schema
    from pyiceberg.types import NestedField, StringType

    from qbatch.connectors.iceberg_tables import iceberg_schema

    catalog = open_catalog(None, str(tmp_path), None)
    catalog.create_namespace("qbatch")
    schema = iceberg_schema(RESULTS_SCHEMA)
    extra = Schema(*schema.fields, NestedField(99, "tenant", StringType(), required=True))
    catalog.create_table(("qbatch", "t1"), schema=extra)
    with pytest.raises(ConfigError, match="tenant"):
        ensure_table(catalog, "qbatch", "t1", RESULTS_SCHEMA)
    catalog.create_table(("qbatch", "t2"), schema=schema)  # unpartitioned
    with pytest.raises(ConfigError, match=r"identity\(run_date\)"):
        ensure_table(catalog, "qbatch", "t2", RESULTS_SCHEMA)
    optional = Schema(*schema.fields, NestedField(99, "note", StringType(), required=False))
    catalog.create_table(("qbatch", "t3"), schema=optional, partition_spec=ensure_table(
        catalog, "qbatch", "t4", RESULTS_SCHEMA).spec())
    assert ensure_table(catalog, "qbatch", "t3", RESULTS_SCHEMA) is not None  # optional extras are fine


def test_the_ledger_removes_only_files_of_runs_that_never_committed(tmp_path):
    results = IcebergResults(None, str(tmp_path / "out"), None)
    base = results.data_base("r1", "tok1")
    folder = base[len("file://"):]
    os.makedirs(folder)
    for name in ("part-a.parquet", "part-b.parquet"):
        open(f"{folder}/{name}", "wb").close()
    pending = PendingFiles(str(tmp_path / "out"), DAY, None)
    pending.add("r1", "tok1", base, ["part-a.parquet", "part-b.parquet", "part-never-written.parquet"])
    pending.add("r2", "tok2", results.data_base("r2", "tok2"), ["part-c.parquet"])
    pending.add("r3", "tok3", results.data_base("r3", "tok3"), ["part-d.parquet"])
    removed = pending.clean(committed={"tok2"}, own_token="tok3")
    assert sorted(p.rsplit("/", 1)[1] for p in removed) == ["part-a.parquet", "part-b.parquet"]
    assert not os.listdir(folder)
    assert [r["token"] for r in pending._load()] == ["tok3"]  # this run's own entry stays until its commit
    pending.drop("tok3")
    assert not (tmp_path / "out" / "_iceberg_pending" / f"run_date={DAY.isoformat()}.json").exists()
