"""A rerank run's staging folder, `{output.uri}/_staging/run_date=D/{run_id}/`, where workers write and
the driver keeps its books. Every name is deterministic, so a retried task rewrites the same file, and
the driver only ever acts on names it was sent: it never lists a folder to find parts.

    prepare/PREPARED.json   the finished prepare phase: its fingerprint, the log listing, its units and
                            dead-letter parts and counts (written last, by the driver)
    prepared/{unit}.parquet whole queries with their candidates' texts (raw queries: deleted after commit)
    dead_letter/*.parquet   rows for the dead-letter table, written by the workers that rejected them
    results/{unit}.parquet  the scored rows of one unit
    started/{unit}          written by a scoring actor when it begins a unit (a resume tells in-flight ones)
    units/{unit}.json       the acknowledgement of a scored unit, written by the driver: the checkpoint

Picklable: workers get it as an argument and open their own filesystem."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from qbatch.connectors.dead_letter_writer import DEAD_LETTER_SCHEMA
from qbatch.connectors.object_store import filesystem_for, join_uri, read_bytes, storage_error, write_bytes
from qbatch.connectors.source_config import ObjectStoreOptions


def staging_uri(output_uri: str, run_date_iso: str, run_id: str) -> str:
    return join_uri(output_uri, "_staging", f"run_date={run_date_iso}", run_id)


def remove_abandoned(output_uri: str, run_date_iso: str, run_id: str,
                     storage: ObjectStoreOptions | None = None) -> list[str]:
    """Delete the staging folders that other run ids left for this run date (runs killed and never
    resumed): their prepared parts hold raw queries and texts. Call it holding the date's run lock, so
    none of them is running. Returns the run ids removed. (An Iceberg run's data files are not here: the
    date's ledger removes those.)"""
    fs, path = filesystem_for(join_uri(output_uri, "_staging", f"run_date={run_date_iso}"), storage)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        others = sorted(i.path.rsplit("/", 1)[-1] for i in infos if i.type == pafs.FileType.Directory)
        others = [name for name in others if name != run_id]
        for name in others:
            RerankStaging(staging_uri(output_uri, run_date_iso, name), name, storage).delete_all()
    except OSError as e:
        raise storage_error("clear abandoned staging folders in", path, e, storage) from None
    return others


def _write(uri: str, data: bytes, storage: ObjectStoreOptions | None) -> None:
    try:
        write_bytes(uri, data, storage)
    except OSError as e:
        raise storage_error("write", uri, e, storage) from None


def write_parquet(uri: str, table: pa.Table, storage: ObjectStoreOptions | None) -> None:
    """One whole zstd Parquet file, published at once (a retried task rewrites the same file)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    _write(uri, sink.getvalue().to_pybytes(), storage)


class RerankStaging:
    """Reads and writes the files of one run's staging folder by relative name."""

    def __init__(self, root: str, run_id: str, storage: ObjectStoreOptions | None = None):
        self.root, self.run_id, self.storage = root, run_id, storage

    def uri(self, rel: str) -> str:
        return join_uri(self.root, rel)

    def write_table(self, rel: str, table: pa.Table) -> None:
        write_parquet(self.uri(rel), table, self.storage)

    def write_dead_letters(self, rel: str, rows: pa.Table) -> None:
        """Dead-letter rows (its columns but run_id) as one part of the dead-letter table's schema."""
        n = rows.num_rows
        arrays = [pa.array([self.run_id] * n, pa.string()) if f.name == "run_id" else rows.column(f.name).cast(f.type)
                  for f in DEAD_LETTER_SCHEMA]
        self.write_table(rel, pa.Table.from_arrays(arrays, schema=DEAD_LETTER_SCHEMA.remove_metadata()))

    def read_table(self, rel: str, schema: pa.Schema | None = None) -> pa.Table:
        data = read_bytes(self.uri(rel), self.storage)
        if data is None:
            raise FileNotFoundError(f"{self.uri(rel)} is missing from the run's staging folder")
        table = pq.read_table(pa.BufferReader(data))
        return table.select(schema.names).cast(schema) if schema is not None else table

    def write_bytes(self, rel: str, data: bytes) -> None:
        _write(self.uri(rel), data, self.storage)

    def write_json(self, rel: str, doc: dict[str, Any]) -> None:
        self.write_bytes(rel, json.dumps(doc, sort_keys=True, default=str).encode())

    def read_json(self, rel: str) -> dict[str, Any] | None:
        data = read_bytes(self.uri(rel), self.storage)
        return None if data is None else json.loads(data)

    def exists(self, rel: str) -> bool:
        fs, path = filesystem_for(self.uri(rel), self.storage)
        return fs.get_file_info(path).type != pafs.FileType.NotFound

    def names_in(self, folder: str) -> set[str]:
        """The names in one of the driver's own ledgers (units/, started/): never a folder of parts."""
        fs, path = filesystem_for(self.uri(folder), self.storage)
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        return {i.path.rsplit("/", 1)[-1] for i in infos if i.type == pafs.FileType.File}

    def delete(self, rel: str) -> None:
        fs, path = filesystem_for(self.uri(rel), self.storage)
        if fs.get_file_info(path).type == pafs.FileType.File:
            fs.delete_file(path)

    def delete_all(self) -> None:
        """Remove the whole staging folder (after a commit: prepared parts hold raw queries and texts)."""
        fs, path = filesystem_for(self.root, self.storage)
        try:
            if fs.get_file_info(path).type == pafs.FileType.Directory:
                fs.delete_dir(path)
            elif not isinstance(fs, pafs.LocalFileSystem):
                fs.delete_dir_contents(path, missing_dir_ok=True)
        except OSError as e:
            raise storage_error("delete the staging folder", self.root, e, self.storage) from None


class ResultFiles:
    """Where scoring workers write each unit's result file: `{base}/{prefix}{unit}.parquet`. The staging
    folder's results/ for the Parquet format; below the Iceberg table's location for Iceberg. `write`
    returns the name the acknowledgement carries (relative to `base`)."""

    def __init__(self, base: str, prefix: str, storage: ObjectStoreOptions | None = None):
        self.base, self.prefix, self.storage = base, prefix, storage

    def name(self, unit: str) -> str:
        return f"{self.prefix}{unit}.parquet"

    def uri(self, name: str) -> str:
        return join_uri(self.base, name)

    def write(self, unit: str, table: pa.Table) -> str:
        name = self.name(unit)
        write_parquet(self.uri(name), table, self.storage)
        return name
