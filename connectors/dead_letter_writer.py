"""The dead-letter table of a run: every rejected row, why, and where it came from, as Parquet parts
under `{root}/runs/{run_id}/dead_letter/part-00000.parquet` (the index job's root is `{output_uri}/{alias}`), on local disk or an object store.

Object stores cannot append, so rows are buffered and each part is written whole once it holds
`rows_per_part` rows or `bytes_per_part` bytes, and at close(). Used on the driver only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from qbatch.connectors.object_store import filesystem_for, join_uri, storage_error, write_bytes
from qbatch.connectors.source_config import ObjectStoreOptions

DEAD_LETTER_SCHEMA = pa.schema([
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("doc_id", pa.string()),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("stage", pa.string()),
    pa.field("file", pa.string()),
    pa.field("line", pa.int64()),
    pa.field("original_row", pa.string()),
    pa.field("detail", pa.string()),
])

# PrepStage reject rows (pipeline/prep_stage.py) can be written as they are.
_ALIASES = {"reject_reason": "reason", "reject_stage": "stage", "reject_detail": "detail",
            "_file": "file", "_line": "line"}


def dead_letter_uri(output_uri: str, run_id: str) -> str:
    """The folder holding a run's dead-letter parts."""
    return join_uri(output_uri, "runs", run_id, "dead_letter")


class DeadLetterWriter:
    """Appends reject rows to the run's dead-letter table; `count` and `counts_by_reason` tally them."""

    def __init__(self, output_uri: str, run_id: str, storage: ObjectStoreOptions | None = None,
                 rows_per_part: int = 100_000, bytes_per_part: int = 64 << 20, uri: str | None = None):
        # `uri` puts the parts elsewhere than the run's table (a run's plan keeps its scan's rejects apart).
        self.uri = uri or dead_letter_uri(output_uri, run_id)
        self.run_id = run_id
        self._storage = storage
        self._rows_per_part = rows_per_part
        self._bytes_per_part = bytes_per_part
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._pending_bytes = 0
        self._counts: Counter[str] = Counter()
        self._cleared = False
        self._closed = False
        self.parts: list[str] = []

    @property
    def count(self) -> int:
        return sum(self._counts.values())

    @property
    def counts_by_reason(self) -> dict[str, int]:
        return dict(sorted(self._counts.items()))

    def write(self, rows: pa.Table | Iterable[Mapping[str, Any]]) -> int:
        """Buffer reject rows (a table or dicts with the dead-letter or PrepStage columns); how many."""
        if self._closed:
            raise RuntimeError("DeadLetterWriter is closed")
        table = self._conform(rows)
        if table.num_rows == 0:
            return 0
        self._counts.update(table.column("reason").to_pylist())
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self._pending_bytes += table.nbytes
        if self._pending_rows >= self._rows_per_part or self._pending_bytes >= self._bytes_per_part:
            self._flush()
        return table.num_rows

    def close(self) -> None:
        """Write what is buffered; stale parts of an earlier attempt of this run are removed."""
        if self._closed:
            return
        self._flush()
        self._clear_stale_parts()
        self._closed = True

    def __enter__(self) -> "DeadLetterWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _conform(self, rows: pa.Table | Iterable[Mapping[str, Any]]) -> pa.Table:
        if not isinstance(rows, pa.Table):
            rows = pa.Table.from_pylist([dict(r) for r in rows])
        renamed = {_ALIASES.get(name, name): rows.column(name) for name in rows.column_names
                   if _ALIASES.get(name, name) in DEAD_LETTER_SCHEMA.names}
        n = rows.num_rows
        arrays = []
        for field in DEAD_LETTER_SCHEMA:
            if field.name == "run_id":
                arrays.append(pa.array([self.run_id] * n, pa.string()))
            elif field.name in renamed:
                arrays.append(renamed[field.name].cast(field.type))
            else:
                arrays.append(pa.nulls(n, field.type))
        table = pa.Table.from_arrays(arrays, schema=DEAD_LETTER_SCHEMA.remove_metadata())
        if n and table.column("reason").null_count:
            raise ValueError("every dead-letter row needs a reason")
        return table

    def _flush(self) -> None:
        if not self._pending_rows:
            return
        self._clear_stale_parts()
        table = pa.concat_tables(self._pending).combine_chunks()
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        part = join_uri(self.uri, f"part-{len(self.parts):05d}.parquet")
        try:
            write_bytes(part, sink.getvalue().to_pybytes(), self._storage)
        except OSError as e:
            raise storage_error("write the dead-letter part", part, e, self._storage) from None
        self.parts.append(part)
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0

    def _clear_stale_parts(self) -> None:
        # A retried run reuses its run id; parts left by the earlier attempt must not be read as ours.
        if self._cleared:
            return
        self._cleared = True
        fs, base = filesystem_for(self.uri, self._storage)
        try:
            infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
            for info in infos:
                name = info.path.rsplit("/", 1)[-1]
                if info.type == pafs.FileType.File and name.startswith("part-") and name.endswith(".parquet"):
                    fs.delete_file(info.path)
        except OSError as e:
            raise storage_error("clear old dead-letter parts in", self.uri, e, self._storage) from None


def read_dead_letter(output_uri: str, run_id: str, storage: ObjectStoreOptions | None = None) -> pa.Table:
    """All dead-letter rows of a run, parts in order; an empty table when there are none."""
    uri = dead_letter_uri(output_uri, run_id)
    fs, base = filesystem_for(uri, storage)
    infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    paths = sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(".parquet"))
    if not paths:
        return DEAD_LETTER_SCHEMA.empty_table()
    return pa.concat_tables([pq.read_table(p, filesystem=fs, schema=DEAD_LETTER_SCHEMA) for p in paths])
