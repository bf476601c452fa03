"""The rerank job's Iceberg tables: the results (partitioned by identity(run_date); one snapshot per run
date's commit) and the per-run metrics (one row per run date), in a pyiceberg catalog.

With no `output.catalog` and a local `output.uri` the catalog is embedded: pyiceberg's `sql` catalog on
SQLite at `{output.uri}/_iceberg/catalog.db`, its warehouse at `{output.uri}/_iceberg/warehouse/`, so a
laptop gets real Iceberg tables with no server. The catalog owns each table's location; the scoring
workers write the day's data files below it, under `data/qbatch/{run_id}-{prepare token}/`, never under
Hive-style `run_date=` folders. The driver commits them without reading a row: it reads each file's
Parquet footer for its statistics (the partition value comes from the file's run_date column), and
makes one overwrite snapshot that removes the day's data files and adds the new ones, carrying the run
id in its summary. A run never changes a table's schema: the contract (the README's result columns
plus run_date) must be there with the same types and requiredness, and the spec must be
identity(run_date); anything else is a ConfigError naming the column.

pyiceberg retries a commit that meets a concurrent one (the table's commit.retry.* properties; qbatch
sets commit.retry.num-retries on the tables it creates); qbatch adds no retries of its own on top and
turns the last conflict into a SinkUnreachableError (transient: exit 4)."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from typing import Any

import pyarrow as pa

from qbatch.common.errors import ConfigError, SinkUnreachableError
from qbatch.common.rerank_result_schema import RERANK_SCHEMA
from qbatch.connectors.iceberg_config import IcebergCatalogConfig
from qbatch.connectors.object_store import split_uri
from qbatch.connectors.source_config import ObjectStoreOptions

RUN_ID_KEY, PREPARED_KEY, RUN_DATE_KEY = "qbatch.run-id", "qbatch.prepared", "qbatch.run-date"
COMMIT_RETRIES = 8
RESULTS_SCHEMA = RERANK_SCHEMA.append(pa.field("run_date", pa.date32(), nullable=False))
METRICS_SCHEMA = pa.schema([
    pa.field("run_date", pa.date32(), nullable=False), pa.field("run_id", pa.string(), nullable=False),
    pa.field("results_snapshot_id", pa.int64()), pa.field("queries", pa.int64()),
    pa.field("scored_pairs", pa.int64()), pa.field("labelled_queries", pa.int64()),
    *[pa.field(f"{m}_{side}", pa.float64()) for m in ("ndcg_at_10", "mrr_at_10", "recall_at_10")
      for side in ("before", "after")],
    pa.field("committed_at", pa.timestamp("us", tz="UTC")),
])


def iceberg_available() -> bool:
    try:
        import pyiceberg  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError:
        return False
    return True


def catalog_key(catalog: IcebergCatalogConfig | None, output_uri: str) -> str:
    """A short, stable name of the catalog (for the run lock), without any secret."""
    if catalog is None:
        return "embedded-" + hashlib.sha256(split_uri(output_uri)[1].encode()).hexdigest()[:12]
    where = catalog.properties.get("uri") or catalog.properties.get("warehouse") or catalog.name
    return f"{catalog.type}-" + hashlib.sha256(f"{catalog.name}|{where}".encode()).hexdigest()[:12]


def embedded_paths(output_uri: str) -> tuple[str, str]:
    """(SQLite catalog database path, warehouse URI) of the embedded catalog under a local output.uri."""
    root = os.path.join(split_uri(output_uri)[1], "_iceberg")
    return os.path.join(root, "catalog.db"), "file://" + os.path.join(root, "warehouse")


def catalog_properties(catalog: IcebergCatalogConfig | None, output_uri: str,
                       storage: ObjectStoreOptions | None) -> tuple[str, dict[str, str]]:
    """(catalog name, pyiceberg properties): the embedded SQLite catalog, or the configured one with its
    secrets read from their environment variables and the object-store settings of output.storage."""
    if catalog is None:
        database, warehouse = embedded_paths(output_uri)
        return "qbatch", {"type": "sql", "uri": f"sqlite:///{database}", "warehouse": warehouse}
    props = {"type": catalog.type, **catalog.properties, **catalog.resolved_secrets()}
    if storage is not None:
        defaults = {"s3.endpoint": storage.endpoint_url, "s3.region": storage.region,
                    "s3.access-key-id": storage.access_key_id.get_secret_value() if storage.access_key_id else None,
                    "s3.secret-access-key": storage.secret_access_key.get_secret_value()
                    if storage.secret_access_key else None,
                    "s3.session-token": storage.session_token.get_secret_value() if storage.session_token else None}
        props.update({k: v for k, v in defaults.items() if v and k not in props})
    return catalog.name, props


def open_catalog(catalog: IcebergCatalogConfig | None, output_uri: str, storage: ObjectStoreOptions | None):
    from pyiceberg.catalog import load_catalog

    name, props = catalog_properties(catalog, output_uri, storage)
    if catalog is None:
        os.makedirs(os.path.dirname(props["uri"][len("sqlite:///"):]), exist_ok=True)
    return load_catalog(name, **props)


def iceberg_schema(schema: pa.Schema):
    """The Iceberg schema of an Arrow schema of flat primitive columns, ids 1..n in order."""
    from pyiceberg.schema import Schema
    from pyiceberg.types import (DateType, DoubleType, FloatType, IntegerType, LongType, NestedField, StringType,
                                 TimestamptzType)

    types = {pa.string(): StringType(), pa.int64(): LongType(), pa.int32(): IntegerType(),
             pa.float64(): DoubleType(), pa.float32(): FloatType(), pa.date32(): DateType(),
             pa.timestamp("us", tz="UTC"): TimestamptzType()}
    return Schema(*[NestedField(field_id=i, name=f.name, field_type=types[f.type], required=not f.nullable)
                    for i, f in enumerate(schema, start=1)])


def check_contract(table, schema: pa.Schema, what: str) -> None:
    """ConfigError naming the first contract column the table lacks or holds differently, or its spec."""
    expected = iceberg_schema(schema)
    actual = table.schema()
    for field in expected.fields:
        found = next((f for f in actual.fields if f.name == field.name), None)
        if found is None:
            raise ConfigError(f"{what} has no column {field.name!r} ({field.field_type}, "
                              f"{'required' if field.required else 'optional'}); qbatch never changes a table's schema")
        if found.field_type != field.field_type or found.required != field.required:
            raise ConfigError(f"{what} column {field.name!r} is {found.field_type} "
                              f"{'required' if found.required else 'optional'}, the result contract says "
                              f"{field.field_type} {'required' if field.required else 'optional'}")
    extra = [f.name for f in actual.fields if f.name not in schema.names and f.required]
    if extra:
        raise ConfigError(f"{what} has required columns outside the result contract: {extra} (extra columns must "
                          "be optional: qbatch writes none of them)")
    spec = table.spec()
    run_date = actual.find_field("run_date")
    fields = [(f.source_id, str(f.transform)) for f in spec.fields]
    if fields != [(run_date.field_id, "identity")]:
        raise ConfigError(f"{what} must be partitioned by identity(run_date), and only by it; its spec is {spec}")


def _partitioned_by_run_date(schema):
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import IdentityTransform

    source = schema.find_field("run_date").field_id
    return PartitionSpec(PartitionField(source_id=source, field_id=1000, transform=IdentityTransform(),
                                        name="run_date"))


def ensure_table(catalog, namespace: str, name: str, schema: pa.Schema, create: bool = True):
    """The table, created with the contract when missing (name mapping set, so files written without
    field ids read by name), else checked against it. `create=False`: None when it is missing."""
    from pyiceberg.exceptions import (NamespaceAlreadyExistsError, NoSuchNamespaceError, NoSuchTableError,
                                      TableAlreadyExistsError)

    ident = (namespace, name)
    if not create:
        try:
            table = catalog.load_table(ident)
        except (NoSuchTableError, NoSuchNamespaceError):
            return None
        check_contract(table, schema, f"Iceberg table {namespace}.{name}")
        return table
    try:
        catalog.create_namespace(namespace)
    except NamespaceAlreadyExistsError:
        pass
    try:
        table = catalog.load_table(ident)
    except NoSuchTableError:
        ice = iceberg_schema(schema)
        try:
            table = catalog.create_table(ident, schema=ice, partition_spec=_partitioned_by_run_date(ice), properties={
                "schema.name-mapping.default": ice.name_mapping.model_dump_json(),
                "commit.retry.num-retries": str(COMMIT_RETRIES)})
        except TableAlreadyExistsError:  # created meanwhile by another run of another date
            table = catalog.load_table(ident)
    check_contract(table, schema, f"Iceberg table {namespace}.{name}")
    return table


class IcebergResults:
    """The results and metrics tables of one configured catalog."""

    def __init__(self, catalog_cfg: IcebergCatalogConfig | None, output_uri: str,
                 storage: ObjectStoreOptions | None, create: bool = True):
        self.cfg = catalog_cfg or IcebergCatalogConfig(type="sql")
        self.catalog = open_catalog(catalog_cfg, output_uri, storage)
        self.results = ensure_table(self.catalog, self.cfg.namespace, self.cfg.table, RESULTS_SCHEMA, create)
        self.metrics = ensure_table(self.catalog, self.cfg.namespace, self.cfg.metrics_table, METRICS_SCHEMA, create)

    @classmethod
    def existing(cls, catalog_cfg: IcebergCatalogConfig | None, output_uri: str,
                 storage: ObjectStoreOptions | None) -> "IcebergResults | None":
        """The tables as they are, writing nothing (for --dry-run and readers); None when there are none."""
        if catalog_cfg is None and not os.path.exists(embedded_paths(output_uri)[0]):
            return None  # opening the embedded catalog would create its database
        tables = cls(catalog_cfg, output_uri, storage, create=False)
        return tables if tables.results is not None else None

    @property
    def name(self) -> str:
        return f"{self.cfg.namespace}.{self.cfg.table}"

    def data_base(self, run_id: str, token: str) -> str:
        """Where a run's scoring workers write its data files: below the table, not a run_date= folder."""
        return f"{self.results.location().rstrip('/')}/data/qbatch/{run_id}-{token}"

    def committed_snapshot(self, run_id: str, token: str) -> int | None:
        """The snapshot a run's results commit made, if it made one (a run killed after its commit)."""
        self.results.refresh()
        for snapshot in self.results.metadata.snapshots:
            summary = snapshot.summary.additional_properties if snapshot.summary else {}
            if summary.get(RUN_ID_KEY) == run_id and summary.get(PREPARED_KEY) == token:
                return snapshot.snapshot_id
        return None

    def committed_tokens(self) -> set[str]:
        self.results.refresh()
        return {(s.summary.additional_properties or {}).get(PREPARED_KEY) for s in self.results.metadata.snapshots
                if s.summary} - {None}

    def commit_day(self, run_date: dt.date, files: list[str], run_id: str, token: str) -> int:
        """One overwrite snapshot: the day's data files out, `files` in. Returns its snapshot id."""
        from pyiceberg.exceptions import CommitFailedException
        from pyiceberg.expressions import EqualTo
        from pyiceberg.io.pyarrow import parquet_file_to_data_file

        table = self.results
        table.refresh()
        new = [parquet_file_to_data_file(table.io, table.metadata, f) for f in files]
        old = [task.file for task in table.scan(row_filter=EqualTo("run_date", run_date.isoformat())).plan_files()]
        summary = {RUN_ID_KEY: run_id, PREPARED_KEY: token, RUN_DATE_KEY: run_date.isoformat()}
        txn = table.transaction()
        with txn.update_snapshot(snapshot_properties=summary).overwrite() as snapshot:
            for data_file in old:
                snapshot.delete_data_file(data_file)
            for data_file in new:
                snapshot.append_data_file(data_file)
        try:
            txn.commit_transaction()
        except CommitFailedException as e:
            raise SinkUnreachableError(
                f"the Iceberg commit of {self.name} run_date={run_date} kept meeting other writers' commits "
                f"after pyiceberg's retries (the table's commit.retry.* properties): {e}; nothing was committed, "
                "rerun the day") from None
        snapshot_id = self.committed_snapshot(run_id, token)
        if snapshot_id is None:
            raise RuntimeError(f"the commit of {self.name} run_date={run_date} left no snapshot of run {run_id}")
        return snapshot_id

    def commit_metrics(self, row: dict[str, Any]) -> None:
        """Replace the run date's metrics row (one per run date)."""
        from pyiceberg.expressions import EqualTo

        import warnings

        table = pa.Table.from_pylist([row], schema=METRICS_SCHEMA)
        self.metrics.refresh()
        with warnings.catch_warnings():  # the first run of a date replaces no row: nothing to warn about
            warnings.filterwarnings("ignore", message="Delete operation did not match any records")
            self.metrics.overwrite(table, overwrite_filter=EqualTo("run_date", row["run_date"].isoformat()),
                                   snapshot_properties={RUN_ID_KEY: row["run_id"]})

    def expire(self, keep: int) -> int:
        """Expire all but the newest `keep` snapshots of the results table; how many were expired."""
        self.results.refresh()
        snapshots = sorted(self.results.metadata.snapshots, key=lambda s: s.timestamp_ms)
        old = [s.snapshot_id for s in snapshots[:-keep]] if keep and len(snapshots) > keep else []
        current = self.results.metadata.current_snapshot_id
        old = [s for s in old if s != current]
        if old:
            self.results.maintenance.expire_snapshots().by_ids(old).commit()
        return len(old)

    def read_day(self, run_date: dt.date, snapshot_id: int | None = None) -> pa.Table:
        """The rows of one run date, at the current snapshot or a given one (time travel)."""
        from pyiceberg.expressions import EqualTo

        self.results.refresh()
        return self.results.scan(row_filter=EqualTo("run_date", run_date.isoformat()),
                                 snapshot_id=snapshot_id).to_arrow()


class PendingFiles:
    """A run date's ledger of Iceberg data files written but not yet committed:
    `{output.uri}/_iceberg_pending/run_date=D.json`, one entry per run (its run id, prepare token, data
    folder and units). The driver adds a run's entry before it scores and drops it after its commit; a run
    that failed its gate or was given up leaves its entry, and the next run of the date deletes those
    files, by name (never by listing a folder, which could take files that time travel still reads),
    after checking that no snapshot came from that run."""

    def __init__(self, output_uri: str, run_date: dt.date, storage: ObjectStoreOptions | None):
        from qbatch.connectors.object_store import join_uri

        self.uri = join_uri(output_uri, "_iceberg_pending", f"run_date={run_date.isoformat()}.json")
        self.storage = storage

    def _load(self) -> list[dict]:
        import json

        from qbatch.connectors.object_store import read_bytes

        data = read_bytes(self.uri, self.storage)
        return json.loads(data)["runs"] if data else []

    def _save(self, runs: list[dict]) -> None:
        import json

        from qbatch.connectors.object_store import filesystem_for, write_bytes

        if runs:
            write_bytes(self.uri, json.dumps({"runs": runs}, sort_keys=True).encode(), self.storage)
            return
        fs, path = filesystem_for(self.uri, self.storage)
        from pyarrow import fs as pafs

        if fs.get_file_info(path).type == pafs.FileType.File:
            fs.delete_file(path)

    def add(self, run_id: str, token: str, base: str, names: list[str]) -> None:
        runs = [r for r in self._load() if r["token"] != token]
        self._save([*runs, {"run_id": run_id, "token": token, "base": base, "files": sorted(names)}])

    def drop(self, token: str) -> None:
        self._save([r for r in self._load() if r["token"] != token])

    def clean(self, committed: set[str], own_token: str | None) -> list[str]:
        """Delete the files of entries from runs that never committed (not this run's); their URIs."""
        from pyarrow import fs as pafs

        from qbatch.connectors.object_store import filesystem_for, join_uri

        removed, keep = [], []
        for run in self._load():
            if run["token"] == own_token:
                keep.append(run)
                continue
            if run["token"] not in committed:  # a committed run's files belong to its snapshot
                for name in run["files"]:
                    uri = join_uri(run["base"], name)
                    fs, path = filesystem_for(uri, self.storage)
                    if fs.get_file_info(path).type == pafs.FileType.File:
                        fs.delete_file(path)
                        removed.append(uri)
        self._save(keep)
        return removed
