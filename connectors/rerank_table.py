"""The rerank result table: Parquet partitions `{uri}/run_date=YYYY-MM-DD/part-NNNNN.parquet`, on local
disk or an object store, each committed with a `_SUCCESS` marker.

A run writes its parts under a staging prefix `{uri}/_staging/run_date=.../` first. `commit()` removes
the partition's `_SUCCESS`, then its old files, copies the staged parts in and writes `_SUCCESS` last,
so a rerun replaces the partition and never duplicates rows. A reader refuses a partition without
`_SUCCESS` (a crashed or half-committed run); the next run's commit repairs it.
"""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from qbatch.common.errors import SourceError
from qbatch.connectors.object_store import filesystem_for, join_uri, read_bytes, storage_error, write_bytes
from qbatch.connectors.source_config import ObjectStoreOptions

SUCCESS = "_SUCCESS"

RERANK_SCHEMA = pa.schema([
    pa.field("query_id", pa.string(), nullable=False),
    pa.field("query", pa.string(), nullable=False),
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("orig_rank", pa.int64()),
    pa.field("orig_score", pa.float64()),
    pa.field("rerank_score", pa.float32(), nullable=False),
    pa.field("new_rank", pa.int32(), nullable=False),
    pa.field("model", pa.string(), nullable=False),
    pa.field("instruction_sha", pa.string(), nullable=False),
    pa.field("run_id", pa.string(), nullable=False),
])


def partition_uri(uri: str, run_date: dt.date) -> str:
    return join_uri(uri, f"run_date={run_date.isoformat()}")


def _files(fs: pafs.FileSystem, base: str) -> list[str]:
    infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True, recursive=True))
    return sorted(i.path for i in infos if i.type == pafs.FileType.File)


class RerankTableWriter:
    """`write(table)` stages one part; `commit()` publishes the staged parts as the run date's partition."""

    def __init__(self, uri: str, run_date: dt.date, run_id: str, storage: ObjectStoreOptions | None = None):
        self.uri, self.run_date, self.run_id, self.storage = uri, run_date, run_id, storage
        self.partition = partition_uri(uri, run_date)
        self.staging = join_uri(uri, "_staging", f"run_date={run_date.isoformat()}")
        self.rows = 0
        self.parts: list[str] = []
        self._fs, _ = filesystem_for(uri, storage)
        self._delete_tree(self.staging)  # parts of an earlier, uncommitted attempt are not ours

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        table = table.select(RERANK_SCHEMA.names).cast(RERANK_SCHEMA)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        part = join_uri(self.staging, f"part-{len(self.parts):05d}.parquet")
        self._write(part, sink.getvalue().to_pybytes())
        self.parts.append(part)
        self.rows += table.num_rows

    def commit(self) -> str:
        """Replace the partition with the staged parts; returns the partition URI."""
        self._delete(join_uri(self.partition, SUCCESS))
        self._delete_tree(self.partition)
        for part in self.parts:
            name = part.rsplit("/", 1)[-1]
            _, src = filesystem_for(part, self.storage)
            _, dst = filesystem_for(join_uri(self.partition, name), self.storage)
            try:
                self._fs.copy_file(src, dst) if not isinstance(self._fs, pafs.LocalFileSystem) else self._move(src, dst)
            except OSError as e:
                raise storage_error("commit the part", part, e, self.storage) from None
        marker = {"run_id": self.run_id, "rows": self.rows, "parts": len(self.parts),
                  "committed_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        self._write(join_uri(self.partition, SUCCESS), json.dumps(marker).encode())
        self._delete_tree(self.staging)
        return self.partition

    def _move(self, src: str, dst: str) -> None:
        self._fs.create_dir(dst.rsplit("/", 1)[0], recursive=True)
        self._fs.move(src, dst)

    def _write(self, uri: str, data: bytes) -> None:
        try:
            write_bytes(uri, data, self.storage)
        except OSError as e:
            raise storage_error("write", uri, e, self.storage) from None

    def _delete(self, uri: str) -> None:
        _, path = filesystem_for(uri, self.storage)
        try:
            if self._fs.get_file_info(path).type == pafs.FileType.File:
                self._fs.delete_file(path)
        except OSError as e:
            raise storage_error("delete", uri, e, self.storage) from None

    def _delete_tree(self, uri: str) -> None:
        _, base = filesystem_for(uri, self.storage)
        try:
            for path in _files(self._fs, base):
                self._fs.delete_file(path)
        except OSError as e:
            raise storage_error("clear", uri, e, self.storage) from None


def read_success(uri: str, run_date: dt.date, storage: ObjectStoreOptions | None = None) -> dict | None:
    data = read_bytes(join_uri(partition_uri(uri, run_date), SUCCESS), storage)
    return None if data is None else json.loads(data)


def read_rerank_partition(uri: str, run_date: dt.date, storage: ObjectStoreOptions | None = None) -> pa.Table:
    """The committed rows of one run date; SourceError when the partition has no `_SUCCESS` marker."""
    if read_success(uri, run_date, storage) is None:
        raise SourceError(f"{partition_uri(uri, run_date)} is not committed (no {SUCCESS}): its run failed or "
                          "is still writing; rerun that day")
    fs, base = filesystem_for(partition_uri(uri, run_date), storage)
    paths = [p for p in _files(fs, base) if p.endswith(".parquet")]
    if not paths:
        return RERANK_SCHEMA.empty_table()
    return pa.concat_tables([pq.read_table(p, filesystem=fs, schema=RERANK_SCHEMA) for p in paths])
