"""A Ray Data datasource over a listed corpus: one read task per file, each streaming the raw-record
schema of connectors/corpus_file_reader.py, so `ray.data.read_datasource(CorpusDatasource(...))`
feeds the CPU prep stage without ever holding a whole file. Each checkpoint unit of a file (at most
`unit_rows` records, common/end_of_file.py) ends with a marker row that says how many of its rows
travel on, so the driver can checkpoint units in any order."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from qbatch.common.end_of_file import UnitEnd
from qbatch.common.row_validation import RejectReason
from qbatch.connectors.corpus_file_reader import RAW_SCHEMA, end_of_unit_row, iter_record_batches
from qbatch.connectors.corpus_listing import CorpusFile
from qbatch.connectors.object_store import read_bytes
from qbatch.connectors.source_config import ObjectStoreOptions

# In-memory bytes per on-disk byte, rough: JSONL/CSV text is kept as is; Parquet pages are
# compressed and every value becomes JSON text; gzip shrinks text about four-fold.
_EXPANSION = {"jsonl": 1.2, "csv": 1.5, "parquet": 4.0}
_COMPRESSED_EXPANSION = 4.0
DUPLICATE_ID = RejectReason.DUPLICATE_ID.value


def estimated_inmemory_size(file: CorpusFile) -> int:
    """A rough size of the raw records one file turns into, for Ray's scheduling."""
    factor = _EXPANSION[file.format]
    if file.uri.lower().endswith((".gz", ".bz2", ".zst")):
        factor *= _COMPRESSED_EXPANSION
    return int(file.size * factor)


def _read_file(file: CorpusFile, storage: ObjectStoreOptions | None, batch_rows: int,
               columns: Sequence[str] | None, keep_lines_uri: str | None, unit_rows: int,
               skip_units: frozenset[int], duplicate_lines_uri: str | None = None) -> Iterator[pa.Table]:
    """The file's records, cut at unit boundaries, each unit followed by its end marker. Units in
    `skip_units` (checkpointed by an earlier attempt) are read past: neither rows nor marker. Records
    listed in `duplicate_lines_uri` travel on marked `_read_error = duplicate_id`."""
    keep = load_keep_lines(keep_lines_uri, storage) if keep_lines_uri else None
    duplicates = load_keep_lines(duplicate_lines_uri, storage) if duplicate_lines_uri else None
    records, unit, expected = 0, 0, 0
    skip_lines: list[tuple[int, int]] = []  # finished units as merged record ranges
    for u in sorted(skip_units):
        lo, hi = u * unit_rows + 1, (u + 1) * unit_rows
        if skip_lines and skip_lines[-1][1] + 1 == lo:
            lo = skip_lines.pop()[0]
        skip_lines.append((lo, hi))
    for batch in iter_record_batches(file, storage, batch_rows=batch_rows, columns=columns, skip_lines=skip_lines):
        records += batch.num_rows
        units = np.maximum(batch.column("_line").to_numpy() - 1, 0) // unit_rows
        cuts = [0, *(np.flatnonzero(np.diff(units)) + 1).tolist(), batch.num_rows]
        for start, stop in zip(cuts[:-1], cuts[1:]):
            while unit < int(units[start]):  # the unit before is complete
                if unit not in skip_units:
                    yield end_of_unit_row(file.uri, records, UnitEnd(unit, expected))
                unit, expected = unit + 1, 0
            if unit in skip_units:
                continue
            part = batch.slice(start, stop - start)
            if keep is not None:
                part = part.filter(pc.is_in(part.column("_line"), value_set=keep))
            if duplicates is not None and len(duplicates) and part.num_rows:
                part = mark_duplicates(part, duplicates)
            expected += part.num_rows
            if part.num_rows:
                yield part
    if unit not in skip_units:
        yield end_of_unit_row(file.uri, records, UnitEnd(unit, expected, units=unit + 1))


def mark_duplicates(part: pa.Table, duplicates: pa.Array) -> pa.Table:
    """`_read_error = duplicate_id` on the records whose number is in `duplicates`."""
    hit = pc.is_in(part.column("_line"), value_set=duplicates)
    errors = pc.if_else(hit, pa.scalar(DUPLICATE_ID, pa.string()), part.column("_read_error"))
    return part.set_column(part.schema.get_field_index("_read_error"), "_read_error", errors)


def load_keep_lines(uri: str, storage: ObjectStoreOptions | None) -> pa.Array:
    """The record numbers of one file that a run must (re)process, from a one-column Parquet file."""
    data = read_bytes(uri, storage)
    if data is None:
        raise FileNotFoundError(f"line plan {uri} is missing")
    return pq.read_table(pa.BufferReader(data)).column("line").combine_chunks()


class CorpusDatasource(Datasource):
    """One ReadTask per corpus file, whatever parallelism Ray asks for: a file is what a dead-letter row
    and the report point at. Each unit of `unit_rows` records ends with a marker row. `keep_lines`
    (file URI -> URI of a Parquet list of record numbers) limits a file to those records, for runs
    that embed only what their plan says; `skip_units` (file URI -> units) leaves out units that an
    earlier attempt checkpointed; `duplicate_lines` (file URI -> plan file URI) marks the records
    that the run's plan found to repeat an earlier id."""

    def __init__(self, files: Sequence[CorpusFile], storage: ObjectStoreOptions | None = None,
                 batch_rows: int = 2048, columns: Sequence[str] | None = None,
                 keep_lines: dict[str, str] | None = None, unit_rows: int = 1 << 62,
                 skip_units: dict[str, Iterable[int]] | None = None,
                 duplicate_lines: dict[str, str] | None = None):
        super().__init__()
        if batch_rows < 1 or unit_rows < 1:
            raise ValueError("batch_rows and unit_rows must be >= 1")
        self._unit_rows = int(unit_rows)
        self._skip_units = {uri: frozenset(units) for uri, units in (skip_units or {}).items()}
        self._duplicate_lines = dict(duplicate_lines or {})
        self._files = list(files)
        self._storage = storage
        self._batch_rows = batch_rows
        self._columns = list(columns) if columns is not None else None
        self._keep_lines = dict(keep_lines or {})

    def get_name(self) -> str:
        return "Corpus"

    def estimate_inmemory_data_size(self) -> int | None:
        return sum(estimated_inmemory_size(f) for f in self._files)

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: object | None = None) -> list[ReadTask]:
        tasks = []
        for file in self._files:
            metadata = BlockMetadata(num_rows=None, size_bytes=estimated_inmemory_size(file),
                                     input_files=[file.uri], exec_stats=None)
            read_fn = functools.partial(_read_file, file, self._storage, self._batch_rows, self._columns,
                                        self._keep_lines.get(file.uri), self._unit_rows,
                                        self._skip_units.get(file.uri, frozenset()),
                                        self._duplicate_lines.get(file.uri))
            tasks.append(ReadTask(read_fn, metadata, schema=RAW_SCHEMA, per_task_row_limit=per_task_row_limit))
        return tasks
