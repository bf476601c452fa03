"""Rows partitioned by doc-id bucket into Arrow stream files on local disk, read back one bucket at a
time: how an incremental run holds a whole corpus's hashes with flat memory."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc


def _hash32(doc_id: str) -> int:
    # The first 4 bytes of sha1, i.e. int(sha1(doc_id).hexdigest()[:8], 16), without the hex detour.
    return int.from_bytes(hashlib.sha1(doc_id.encode("utf-8", "surrogatepass")).digest()[:4], "big")


def bucket_of(doc_id: str, n_buckets: int) -> int:
    """The bucket of a document: stable across processes, hosts and Python versions."""
    return _hash32(doc_id) % n_buckets


def bucket_ids(doc_ids: list[str], n_buckets: int) -> np.ndarray:
    """bucket_of for many ids at once."""
    return np.fromiter(map(_hash32, doc_ids), dtype=np.int64, count=len(doc_ids)) % n_buckets


class BucketSpill:
    """`add(table)` appends rows (must have `doc_id`) to their bucket; `read(i)` returns bucket i."""

    def __init__(self, schema: pa.Schema, n_buckets: int, directory: str | None = None):
        if "doc_id" not in schema.names:
            raise ValueError("a bucket spill needs a doc_id column")
        self.schema, self.n_buckets = schema, n_buckets
        self._dir = Path(tempfile.mkdtemp(prefix="qbatch-spill-", dir=directory))
        self._writers: dict[int, ipc.RecordBatchStreamWriter] = {}
        self.rows = 0

    def add(self, table: pa.Table) -> None:
        table = table.select(self.schema.names).cast(self.schema)
        if table.num_rows == 0:
            return
        buckets = bucket_ids(table.column("doc_id").to_pylist(), self.n_buckets)
        order = np.argsort(buckets, kind="stable")
        grouped = table.take(pa.array(order))
        offsets = np.concatenate([[0], np.cumsum(np.bincount(buckets, minlength=self.n_buckets))])
        for i in np.flatnonzero(np.diff(offsets)):
            self._writer(int(i)).write_table(grouped.slice(int(offsets[i]), int(offsets[i + 1] - offsets[i])))
        self.rows += table.num_rows

    def read(self, i: int) -> pa.Table:
        writer = self._writers.pop(i, None)
        if writer is not None:
            writer.close()
        path = self._dir / f"{i:05d}.arrow"
        if not path.exists():
            return self.schema.empty_table()
        with pa.memory_map(str(path)) as source:
            return ipc.open_stream(source).read_all()

    def _writer(self, i: int) -> ipc.RecordBatchStreamWriter:
        if i not in self._writers:
            self._writers[i] = ipc.new_stream(pa.OSFile(str(self._dir / f"{i:05d}.arrow"), "wb"), self.schema)
        return self._writers[i]

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> "BucketSpill":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
