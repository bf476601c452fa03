"""One embed-and-write pass over a list of corpus files into one collection, resumable per checkpoint unit.

The Ray plan reads, prepares, embeds and writes (jobs/index/dataset_plan.py); the driver only keeps
the books (jobs/index/ack_book.py). Units with a completion marker from an earlier attempt are not
read again; their counts come from the markers, so the totals stay exact across crashes. A resume
reads the markers, never the manifest rows."""

from __future__ import annotations

import collections
import datetime as dt
import logging
import sys
import time
from dataclasses import dataclass, field

from qbatch.jobs.index.ack_book import COUNT_KEYS, AckBook
from qbatch.jobs.index.dataset_plan import ReadPlan, WriterTarget, build_index_dataset
from qbatch.jobs.runtime.progress_line import ProgressLine

log = logging.getLogger("qbatch.index")


@dataclass
class LoadResult:
    totals: collections.Counter = field(default_factory=collections.Counter)
    rejected: collections.Counter = field(default_factory=collections.Counter)
    files_total: int = 0
    files_skipped_done: int = 0  # finished by an earlier attempt
    files_resumed: int = 0  # with units an earlier attempt left in flight
    units_skipped_done: int = 0  # checkpoint units finished by an earlier attempt
    units_in_flight_at_crash: int = 0  # units an earlier attempt acknowledged rows of but never finished
    docs_redone: int = 0  # rows of those units, read, embedded and written again by this attempt
    docs_this_attempt: int = 0
    book: AckBook | None = None
    seconds: float = 0.0
    first_batch_s: float | None = None  # from the pass's start to its first acknowledged batch at the driver
    started_at: float = 0.0  # Unix time the pass began


def run_load_pass(run, files, read: ReadPlan = ReadPlan(), undo=None) -> LoadResult:
    """Embed and write `files` (less what earlier attempts finished) into `run.collection`."""
    from qbatch.connectors.file_progress import file_key, unit_stem

    cfg, progress = run.cfg, run.progress
    start = time.perf_counter()
    result = LoadResult(files_total=len(files), started_at=time.time())
    units_done = progress.done_units()
    done_files = progress.done_files(units_done)
    done_stems = {unit_stem(uri, u) for uri, units in units_done.items() for u in units}
    in_flight = progress.started_keys() - done_stems
    todo = [f for f in files if f.uri not in done_files]
    result.files_skipped_done = len(files) - len(todo)
    result.units_skipped_done = sum(len(units_done.get(f.uri, {})) for f in files)
    result.units_in_flight_at_crash = len(in_flight)
    flight_files = {stem.split(".u")[0] for stem in in_flight}
    result.files_resumed = sum(1 for f in todo if file_key(f.uri) in flight_files)
    if result.units_skipped_done or in_flight:
        log.info("resuming run %s: %d files and %d checkpoint units already done, %d units were in flight",
                 run.run_id, result.files_skipped_done, result.units_skipped_done, len(in_flight))
    if todo:
        book = AckBook(progress, run.run_id, cfg.run.checkpoint_rows)
        skip = {f.uri: set(units_done.get(f.uri, {})) for f in todo if units_done.get(f.uri)}
        ds = build_index_dataset(cfg, todo, run.spec.fingerprint, run.spec.dim, run.pools,
                                 read=ReadPlan(read.keep_lines, read.duplicate_lines, skip),
                                 writer=writer_target(run, undo), tokenizer_snapshot=run.tokenizer_snapshot())
        bar = ProgressLine(enabled=cfg.run.progress and sys.stderr.isatty(), unit="docs")
        try:
            with run.client.released():  # local mode: the writer actor owns the folder meanwhile
                # No prefetching: Ray Data would hold each ack batch back until the next two had arrived,
                # so every unit would be checkpointed two blocks late and a crash would redo them.
                for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=0):
                    if result.first_batch_s is None:  # actors started, models loaded, one batch written
                        result.first_batch_s = time.perf_counter() - start
                    book.consume(batch)
                    bar.update(book.counters.totals["read"])
                    run.check_lock()
            book.close()
        finally:
            bar.close()
        result.book = book
        if book.strays:  # parts of documents that another part's reject turned down
            from qbatch.connectors.point_ids import point_id
            from qbatch.connectors.qdrant_writer import PointWriter

            PointWriter(run.client, run.collection, undo=undo).delete_points([point_id(d, c) for d, c in book.strays])
            log.info("deleted %d points of documents rejected after part of them was written", len(book.strays))
        if book.counters.precisions:
            from qbatch.connectors.collection_guard import record_precisions

            record_precisions(run.client, run.collection, book.counters.precisions)
    all_units = progress.done_units()
    all_done = progress.done_files(all_units)
    for uri in all_done:
        counts = all_done[uri]
        result.totals.update({k: int(counts.get(k, 0)) for k in COUNT_KEYS})
        result.rejected.update(counts.get("rejected", {}))
    for uri, units in all_units.items():
        for u, marker in units.items():
            if unit_stem(uri, u) in in_flight:
                result.docs_redone += int(marker["counts"].get("read", 0))
    result.docs_this_attempt = int(result.book.counters.totals["read"]) if result.book else 0
    missing = [f.uri for f in files if f.uri not in all_done]
    if missing:
        raise RuntimeError(f"{len(missing)} files finished without all their completion markers, e.g. {missing[:3]}")
    result.seconds = time.perf_counter() - start
    return result


def writer_target(run, undo=None) -> WriterTarget:
    """The writer stage's target for this run; `undo` (qbatch.connectors.undo_log.UndoLog) for an in-place run."""
    from qbatch.connectors.qdrant_lease import writer_config

    cfg = run.cfg
    return WriterTarget(
        qdrant=writer_config(cfg.qdrant), collection=run.collection, run_id=run.run_id,
        indexed_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        payload_columns=list(cfg.columns.payload),
        undo={"run_folder": undo.run_folder, "storage": run.storage} if undo is not None else None)
