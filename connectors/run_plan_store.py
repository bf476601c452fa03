"""A run's plan, persisted under `{run folder}/plan/` so every later attempt of the run does exactly
what the first attempt planned, whatever happened to the source in between:

    plan/PLAN.json                       written LAST: the listing the plan was made from, its figures,
                                         and the URIs of the parts below
    plan/{file key}.{kind}.parquet       record numbers of one input file (lines to embed, duplicates)
    plan/{name}/bucket-0000.parquet      bucketed tables (payload updates, deletions, manifest rows
                                         carried over), one file per non-empty doc-id bucket
    plan/rejects/part-00000.parquet      what the plan's scan rejected, as dead-letter rows

Parts have deterministic names and the marker comes last, so a crash while planning leaves no marker
and the next attempt simply plans again, overwriting the parts. A plan refused before anything was
written is discarded, so a retry of the run (the source fixed meanwhile) plans afresh."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from qbatch.common.errors import SourceError
from qbatch.connectors.bucket_spill import BucketSpill
from qbatch.connectors.corpus_listing import CorpusFile
from qbatch.connectors.dead_letter_writer import DEAD_LETTER_SCHEMA, DeadLetterWriter
from qbatch.connectors.file_progress import file_key
from qbatch.connectors.object_store import filesystem_for, join_uri, read_bytes, table_to_parquet, write_bytes
from qbatch.connectors.source_config import ObjectStoreOptions

PLAN_MARKER = "PLAN.json"


def listing_record(files: Sequence[CorpusFile]) -> list[dict[str, Any]]:
    """The listing as JSON-able rows, in listing order."""
    return [{"uri": f.uri, "path": f.path, "size": f.size, "format": f.format, "modified_ns": f.modified_ns}
            for f in files]


def planned_files(saved: list[dict[str, Any]], current: Sequence[CorpusFile], run_id: str) -> list[CorpusFile]:
    """The files the plan was made from. A planned file that vanished or changed since (size or
    modification time) is a SourceError: the plan's record numbers no longer say what to embed."""
    now = {f.uri: f for f in current}
    files = []
    for row in saved:
        planned = CorpusFile(uri=row["uri"], path=row["path"], size=int(row["size"]), format=row["format"],
                             modified_ns=row.get("modified_ns"))
        seen = now.get(planned.uri)
        changed = seen is None or seen.size != planned.size or (
            planned.modified_ns is not None and seen.modified_ns is not None and seen.modified_ns != planned.modified_ns)
        if changed:
            what = "is gone" if seen is None else (f"changed (size {planned.size} -> {seen.size}, modified "
                                                   f"{planned.modified_ns} -> {seen.modified_ns})")
            raise SourceError(
                f"{planned.uri} {what} since run {run_id} planned its work; a resumed run does exactly what its "
                "plan says and cannot with a changed file. Start a new run (leave run.run_id unset or give a "
                "new one); undo an unfinished in-place run first with `qbatch index rollback`")
        files.append(planned)
    return files


class PlannedBuckets:
    """A bucketed table of the plan, read back one bucket at a time (the reading side of BucketSpill)."""

    def __init__(self, folder: str, schema: pa.Schema, n_buckets: int, storage: ObjectStoreOptions | None = None):
        self.folder, self.schema, self.n_buckets, self._storage = folder, schema, n_buckets, storage

    def read(self, i: int) -> pa.Table:
        data = read_bytes(join_uri(self.folder, bucket_file(i)), self._storage)
        if data is None:  # empty buckets are not written
            return self.schema.empty_table()
        return pq.read_table(pa.BufferReader(data)).cast(self.schema)

    def close(self) -> None:
        """Nothing held: the parts stay with the run."""


def bucket_file(i: int) -> str:
    return f"bucket-{i:04d}.parquet"


class RunPlanStore:
    """Reads and writes the parts and the marker of one run's plan."""

    def __init__(self, run_folder: str, storage: ObjectStoreOptions | None = None):
        self.folder = join_uri(run_folder, "plan")
        self.storage = storage

    def load(self) -> dict[str, Any] | None:
        """The marker of a finished plan, or None when no attempt finished planning."""
        data = read_bytes(join_uri(self.folder, PLAN_MARKER), self.storage)
        return json.loads(data) if data is not None else None

    def commit(self, body: dict[str, Any], files: Sequence[CorpusFile]) -> dict[str, Any]:
        """Write the marker, with the listing: from here on every attempt runs this plan."""
        marker = {**body, "files": listing_record(files)}
        write_bytes(join_uri(self.folder, PLAN_MARKER), json.dumps(marker, sort_keys=True).encode(), self.storage)
        return marker

    def discard(self) -> None:
        """Drop the marker of a plan that was refused before anything was written: a retry of the run
        plans afresh (the parts are overwritten then)."""
        fs, path = filesystem_for(join_uri(self.folder, PLAN_MARKER), self.storage)
        if fs.get_file_info(path).type != pafs.FileType.NotFound:
            fs.delete_file(path)

    def write_line_plans(self, kind: str, lines: dict[str, list[int]]) -> dict[str, str]:
        """One sorted one-column Parquet file of record numbers per input file; file URI -> part URI."""
        plans = {}
        for uri, wanted in lines.items():
            target = join_uri(self.folder, f"{file_key(uri)}.{kind}.parquet")
            write_bytes(target, table_to_parquet(pa.table({"line": pa.array(sorted(wanted), pa.int64())})),
                        self.storage)
            plans[uri] = target
        return plans

    def write_buckets(self, name: str, spill: BucketSpill) -> PlannedBuckets:
        """Publish every non-empty bucket of a local spill (after removing what an unfinished or discarded
        plan left there); the reader over what was written."""
        folder = join_uri(self.folder, name)
        fs, path = filesystem_for(folder, self.storage)
        fs.delete_dir_contents(path, missing_dir_ok=True)
        for i in range(spill.n_buckets):
            table = spill.read(i)
            if table.num_rows:
                write_bytes(join_uri(folder, bucket_file(i)), table_to_parquet(table), self.storage)
        return self.buckets(name, spill.schema, spill.n_buckets)

    def buckets(self, name: str, schema: pa.Schema, n_buckets: int) -> PlannedBuckets:
        return PlannedBuckets(join_uri(self.folder, name), schema, n_buckets, self.storage)

    def rejects_writer(self, run_id: str) -> DeadLetterWriter:
        """Where the plan's scan puts what it rejects (dead-letter rows, parts under plan/rejects/)."""
        return DeadLetterWriter(self.folder, run_id, self.storage, uri=join_uri(self.folder, "rejects"))

    def iter_rejects(self) -> Iterator[pa.Table]:
        """The scan's rejects, part by part, to hand to the run's dead-letter table on every attempt."""
        fs, base = filesystem_for(join_uri(self.folder, "rejects"), self.storage)
        infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
        for path in sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(".parquet")):
            yield pq.read_table(path, filesystem=fs, schema=DEAD_LETTER_SCHEMA)
