"""One embed-and-upsert pass over a list of corpus files into one collection, resumable per file.

Files with a completion marker from an earlier attempt are skipped; their counts come from the marker,
so the totals stay exact across crashes. Duplicate-id detection is rebuilt from the done files'
manifest rows (on disk, never an in-memory id set)."""

from __future__ import annotations

import collections
import logging
import sys
import time
from dataclasses import dataclass, field

from jobs.index.config import IndexConfig
from jobs.index.dataset_plan import build_index_dataset
from jobs.index.sink import COUNT_KEYS, IndexSink
from jobs.runtime.progress_line import ProgressLine

log = logging.getLogger("qbatch.index")


@dataclass
class LoadResult:
    totals: collections.Counter = field(default_factory=collections.Counter)
    rejected: collections.Counter = field(default_factory=collections.Counter)
    files_total: int = 0
    files_skipped_done: int = 0  # finished by an earlier attempt
    files_resumed: int = 0  # started but not finished by an earlier attempt: their work is redone
    docs_redone: int = 0  # docs of resumed files processed again in this attempt
    docs_this_attempt: int = 0
    sink: IndexSink | None = None
    seconds: float = 0.0
    first_batch_s: float | None = None  # from the pass's start to its first embedded batch at the driver


def run_load_pass(cfg: IndexConfig, client, collection: str, files, spec, run_id: str, pools, progress,
                  keep_lines: dict[str, str] | None = None, check_lock=None, undo=None) -> LoadResult:
    from connectors.qdrant_writer import PointWriter
    from connectors.seen_ids_store import SeenIdsStore

    start = time.perf_counter()
    result = LoadResult(files_total=len(files))
    done = progress.done_files()
    started = progress.started_keys()
    todo = [f for f in files if f.uri not in done]
    result.files_skipped_done = len(files) - len(todo)
    resumed = {f.uri for f in todo if progress.file_key(f.uri) in started}
    result.files_resumed = len(resumed)
    if result.files_skipped_done or resumed:
        log.info("resuming run %s: %d files already done, %d were in flight", run_id,
                 result.files_skipped_done, len(resumed))
    seen = SeenIdsStore()
    try:
        for table in progress.iter_manifest_rows():
            ids = table.column("doc_id").to_pylist()
            seen.claim((doc_id, "<done>", 0) for doc_id in ids)
        if todo:
            writer = PointWriter.from_config(client, cfg.qdrant, collection, undo=undo)
            sink = IndexSink(writer, progress, seen, run_id, cfg.qdrant.store_text, cfg.columns.payload,
                             filtered=keep_lines is not None)
            ds = build_index_dataset(cfg, todo, spec.fingerprint, spec.dim, pools,
                                     keep_lines={u: p for u, p in (keep_lines or {}).items()
                                                 if u in {f.uri for f in todo}} if keep_lines is not None else None)
            bar = ProgressLine(enabled=cfg.run.progress and sys.stderr.isatty(), unit="docs")
            try:
                for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=2):
                    if result.first_batch_s is None:  # actors started, models loaded, one batch embedded
                        result.first_batch_s = time.perf_counter() - start
                    sink.consume(batch)
                    bar.update(sink.counters.totals["read"])
                    if check_lock is not None:
                        check_lock()
                sink.close()
            finally:
                bar.close()
            result.sink = sink
            if sink.counters.precisions:
                from connectors.collection_guard import record_precisions

                record_precisions(client, collection, sink.counters.precisions)
    finally:
        seen.close()
    all_done = progress.done_files()
    for uri, counts in all_done.items():
        result.totals.update({k: int(counts.get(k, 0)) for k in COUNT_KEYS})
        result.rejected.update(counts.get("rejected", {}))
        if uri in resumed:
            result.docs_redone += int(counts.get("read", 0))
        if uri not in done:
            result.docs_this_attempt += int(counts.get("read", 0))
    missing = [f.uri for f in files if f.uri not in all_done]
    if missing:
        raise RuntimeError(f"{len(missing)} files finished without a completion marker, e.g. {missing[:3]}")
    result.seconds = time.perf_counter() - start
    return result
