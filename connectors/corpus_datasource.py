"""A Ray Data datasource over a listed corpus: one read task per file, each streaming the raw-record
schema of connectors/corpus_file_reader.py, so `ray.data.read_datasource(CorpusDatasource(...))`
feeds the CPU prep stage without ever holding a whole file."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from connectors.corpus_file_reader import RAW_SCHEMA, end_of_file_row, iter_record_batches
from connectors.corpus_listing import CorpusFile
from connectors.object_store import read_bytes
from connectors.source_config import ObjectStoreOptions

# In-memory bytes per on-disk byte, rough: JSONL/CSV text is kept as is; Parquet pages are
# compressed and every value becomes JSON text; gzip shrinks text about four-fold.
_EXPANSION = {"jsonl": 1.2, "csv": 1.5, "parquet": 4.0}
_COMPRESSED_EXPANSION = 4.0


def estimated_inmemory_size(file: CorpusFile) -> int:
    """A rough size of the raw records one file turns into, for Ray's scheduling."""
    factor = _EXPANSION[file.format]
    if file.uri.lower().endswith((".gz", ".bz2", ".zst")):
        factor *= _COMPRESSED_EXPANSION
    return int(file.size * factor)


def _read_file(file: CorpusFile, storage: ObjectStoreOptions | None, batch_rows: int,
               columns: Sequence[str] | None, keep_lines_uri: str | None) -> Iterator[pa.Table]:
    keep = load_keep_lines(keep_lines_uri, storage) if keep_lines_uri else None
    records = 0
    for batch in iter_record_batches(file, storage, batch_rows=batch_rows, columns=columns):
        records += batch.num_rows
        if keep is not None:
            batch = batch.filter(pc.is_in(batch.column("_line"), value_set=keep))
            if batch.num_rows == 0:
                continue
        yield batch
    yield end_of_file_row(file.uri, records)


def load_keep_lines(uri: str, storage: ObjectStoreOptions | None) -> pa.Array:
    """The record numbers of one file that a run must (re)process, from a one-column Parquet file."""
    data = read_bytes(uri, storage)
    if data is None:
        raise FileNotFoundError(f"line plan {uri} is missing")
    return pq.read_table(pa.BufferReader(data)).column("line").combine_chunks()


class CorpusDatasource(Datasource):
    """One ReadTask per corpus file, whatever parallelism Ray asks for: a file is the unit a rerun,
    a dead-letter row and the report point at. Each task ends with an end-of-file marker row.
    `keep_lines` (file URI -> URI of a Parquet list of record numbers) limits a file to those records,
    for incremental runs that re-embed only changed documents."""

    def __init__(self, files: Sequence[CorpusFile], storage: ObjectStoreOptions | None = None,
                 batch_rows: int = 2048, columns: Sequence[str] | None = None,
                 keep_lines: dict[str, str] | None = None):
        super().__init__()
        if batch_rows < 1:
            raise ValueError("batch_rows must be >= 1")
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
                                        self._keep_lines.get(file.uri))
            tasks.append(ReadTask(read_fn, metadata, schema=RAW_SCHEMA, per_task_row_limit=per_task_row_limit))
        return tasks
