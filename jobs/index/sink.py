"""The driver end of the index job: consumes embedded chunk rows in input order and turns them into
Qdrant points, manifest rows and dead-letter rows, counting everything exactly once.

All counting happens here, from the rows that reach the driver: Ray may retry a task, but each output
row is delivered once, so `read == docs_upserted + rejected` holds exactly. When a file's end-of-file
marker arrives, every row of that file has landed (rows arrive in input order); the writer is flushed
(`wait=True` acknowledged) and only then is the file checkpointed, so a rerun after a crash skips it."""

from __future__ import annotations

import collections
import datetime as dt
import json
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from common.end_of_file import EOF_STAGE
from connectors.dead_letter_writer import DEAD_LETTER_SCHEMA
from connectors.file_progress import MANIFEST_SCHEMA
from connectors.point_ids import point_id

DUPLICATE_ID = "duplicate_id"
COUNT_KEYS = ("read", "docs_upserted", "chunks", "points_upserted", "real_tokens", "truncated")


@dataclass
class SinkCounters:
    """This attempt's figures; per-file counts in the progress markers are the durable ones."""

    files_done: int = 0
    computed_tokens: int = 0
    micro_batches: int = 0
    prep_seconds: float = 0.0
    embed_seconds: float = 0.0
    write_seconds: float = 0.0
    checkpoint_seconds: float = 0.0
    sink_seconds: float = 0.0  # everything the driver does per batch, writes and checkpoints included
    totals: collections.Counter = field(default_factory=collections.Counter)
    rejected: collections.Counter = field(default_factory=collections.Counter)
    throughput: list = field(default_factory=list)  # (seconds since start, docs read)
    precisions: set = field(default_factory=set)  # the dtypes the embed actors' models ran in


@dataclass
class _FileState:
    counts: collections.Counter = field(default_factory=collections.Counter)
    rejected: collections.Counter = field(default_factory=collections.Counter)
    manifest: list = field(default_factory=list)
    dead: list = field(default_factory=list)


def _vector_matrix(batch: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """The batch's vectors as one (n, dim) float32 array plus a has-vector mask, without per-row
    Arrow scalars (which cost more than the upsert itself on a fast sink)."""
    n = batch.num_rows
    if "vector" not in batch.column_names or n == 0:
        return np.zeros((n, 0), np.float32), np.zeros(n, bool)
    column = batch.column("vector").combine_chunks()
    dim = column.type.list_size
    values = column.values.slice(column.offset * dim, n * dim).to_numpy(zero_copy_only=False)
    return values.reshape(n, dim), column.is_valid().to_numpy(zero_copy_only=False)


class IndexSink:
    """`consume(batch)` for each embedded batch, then `close()`. Chunks of one document are buffered
    until all arrived, so a document lands whole or not at all."""

    def __init__(self, writer, progress, seen_ids, run_id: str, store_text: bool, payload_columns: list[str],
                 filtered: bool = False, clock=time.monotonic):
        # filtered: the reader skips records by plan (incremental), so a file's record count is not
        # the number of rows that reach us.
        self.writer, self.progress, self.seen, self.filtered = writer, progress, seen_ids, filtered
        self.run_id, self.store_text, self.payload_columns = run_id, store_text, payload_columns
        self.counters = SinkCounters()
        self._files: dict[str, _FileState] = {}
        self._pending: dict[tuple[str, int], list[dict]] = {}
        self._clock, self._start = clock, clock()
        self.indexed_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")

    def consume(self, batch: pa.Table) -> None:
        start = time.perf_counter()
        try:
            self._consume(batch)
        finally:
            self.counters.sink_seconds += time.perf_counter() - start

    def _consume(self, batch: pa.Table) -> None:
        c = self.counters
        for name, attr in (("_prep_seconds", "prep_seconds"), ("_embed_seconds", "embed_seconds"),
                           ("_computed_tokens", "computed_tokens"), ("_micro_batches", "micro_batches")):
            if name in batch.column_names:
                total = pc.sum(batch.column(name)).as_py() or 0
                setattr(c, attr, getattr(c, attr) + type(getattr(c, attr))(total))
        if "_precision" in batch.column_names:
            c.precisions.update(pc.unique(batch.column("_precision")).drop_null().to_pylist())
        matrix, has_vector = _vector_matrix(batch)
        rows = batch.drop_columns([n for n in ("vector", "token_ids") if n in batch.column_names]).to_pylist()
        complete: list[list[dict]] = []
        for i, row in enumerate(rows):
            stage = row["reject_stage"]
            if stage == EOF_STAGE:
                self._land(complete)
                complete = []
                self._finish_file(row["_file"], row["_line"])
                continue
            state = self._file(row["_file"])
            if row["reject_reason"] is not None and stage in ("read", "prep"):
                state.counts["read"] += 1
                self._reject(state, row, row["reject_reason"], stage, row.get("reject_detail"))
                continue
            row["_vector"] = matrix[i] if has_vector[i] else None
            key = (row["_file"], row["_line"])
            parts = self._pending.setdefault(key, [])
            parts.append(row)
            if len(parts) == row["n_chunks"]:
                complete.append(self._pending.pop(key))
        self._land(complete)
        c.throughput.append((round(self._clock() - self._start, 3), c.totals["read"] + sum(
            s.counts["read"] for s in self._files.values())))

    def _file(self, uri: str) -> _FileState:
        state = self._files.get(uri)
        if state is None:
            state = self._files[uri] = _FileState()
            self.progress.mark_started(uri)
        return state

    def _land(self, docs: list[list[dict]]) -> None:
        if not docs:
            return
        owners = self.seen.claim((d[0]["doc_id"], d[0]["_file"], d[0]["_line"]) for d in docs)
        ids, vecs, payloads, files = [], [], [], []
        for chunks, owner in zip(docs, owners):
            chunks.sort(key=lambda r: r["chunk"])
            first = chunks[0]
            state = self._file(first["_file"])
            state.counts["read"] += 1
            bad = next((r for r in chunks if r["reject_reason"] is not None), None)
            if not owner:
                self._reject(state, first, DUPLICATE_ID, "sink", "an earlier row has this id")
                continue
            if bad is not None:
                self._reject(state, first, bad["reject_reason"], bad["reject_stage"], f"chunk {bad['chunk']}")
                continue
            state.counts["docs_upserted"] += 1
            state.counts["chunks"] += len(chunks)
            state.manifest.append((first["doc_id"], first["content_hash"], first["payload_hash"], len(chunks)))
            for r in chunks:
                state.counts["real_tokens"] += int(r["n_tokens"])
                state.counts["truncated"] += int(bool(r["truncated"]))
                ids.append(point_id(r["doc_id"], r["chunk"]))
                vecs.append(r["_vector"])
                payloads.append(self._payload(r))
                files.append(r["_file"])
        if ids:
            t = time.perf_counter()
            self.writer.write(ids, np.stack(vecs), payloads, tags=files)
            self.counters.write_seconds += time.perf_counter() - t

    def _payload(self, r: dict) -> dict:
        payload = {
            "doc_id": r["doc_id"], "chunk": int(r["chunk"]), "span": [int(r["span_start"]), int(r["span_end"])],
            "lang": r["lang"], "content_hash": r["content_hash"], "payload_hash": r["payload_hash"],
            "indexed_at": self.indexed_at, "run_id": self.run_id,
        }
        if self.store_text:
            payload["text"] = r["text"]
        extra = json.loads(r["payload_json"]) if r["payload_json"] else {}
        for key in self.payload_columns:
            payload[key] = extra.get(key)
        return payload

    def _reject(self, state: _FileState, row: dict, reason: str, stage: str, detail: str | None) -> None:
        state.rejected[reason] += 1
        state.dead.append({"run_id": self.run_id, "doc_id": row.get("doc_id"), "reason": reason, "stage": stage,
                           "file": row.get("_file"), "line": row.get("_line"),
                           "original_row": row.get("original_row"), "detail": detail})

    def _finish_file(self, uri: str, records: int) -> None:
        state = self._files.pop(uri, None) or _FileState()
        if state.counts["read"] != records and not self.filtered:
            raise RuntimeError(f"{uri}: {state.counts['read']} records landed but the reader read {records}")
        t = time.perf_counter()
        self.writer.flush()  # acknowledged (wait=True) before the file is marked done
        self.counters.write_seconds += time.perf_counter() - t
        state.counts["points_upserted"] = self.writer.take_acknowledged(uri)  # what Qdrant acknowledged
        counts = {**{k: int(state.counts[k]) for k in COUNT_KEYS}, "rejected": dict(state.rejected)}
        manifest = pa.Table.from_arrays([pa.array(col, t) for col, t in zip(
            zip(*state.manifest) if state.manifest else ([], [], [], []), MANIFEST_SCHEMA.types)],
            schema=MANIFEST_SCHEMA)
        dead = pa.Table.from_pylist(state.dead, schema=DEAD_LETTER_SCHEMA) if state.dead else None
        t = time.perf_counter()
        self.progress.mark_done(uri, counts, manifest, dead)
        self.counters.checkpoint_seconds += time.perf_counter() - t
        self.counters.files_done += 1
        self.counters.totals.update({k: counts[k] for k in COUNT_KEYS})
        self.counters.rejected.update(state.rejected)

    def close(self) -> None:
        if self._pending:
            keys = list(self._pending)[:5]
            raise RuntimeError(f"{len(self._pending)} documents arrived incomplete, e.g. {keys}")
        if self._files:
            raise RuntimeError(f"files without an end-of-file marker: {sorted(self._files)[:5]}")
        t = time.perf_counter()
        self.writer.flush()
        self.counters.write_seconds += time.perf_counter() - t
