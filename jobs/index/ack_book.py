"""The driver end of the index job: it only keeps the books. The writer actors upsert the points and
send back one small acknowledgement row per document or reject (connectors/qdrant_writer_stage.py);
the driver counts them, writes each checkpoint unit's manifest and dead-letter parts, and marks the
unit done once its acknowledged rows equal what the reader saw in it (the unit's end marker says how
many), whatever order they arrive in. Ray may retry a task, but each output row is delivered once, so
`read == docs_upserted + rejected` holds exactly per unit.

Nothing here grows with the corpus: open units hold at most `run.checkpoint_rows` rows each, and the
throughput sample is thinned to a fixed size."""

from __future__ import annotations

import collections
import json
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from qbatch.common.end_of_file import EOF_STAGE, STATS_STAGE, UnitEnd, unit_of
from qbatch.connectors.dead_letter_writer import DEAD_LETTER_SCHEMA
from qbatch.connectors.file_progress import MANIFEST_SCHEMA

COUNT_KEYS = ("read", "docs_upserted", "chunks", "points_upserted", "real_tokens", "truncated")
FORBIDDEN_COLUMNS = frozenset({"vector", "text", "token_ids", "payload_json"})  # bulk data stays in the actors
THROUGHPUT_SAMPLES = 256  # the report's throughput curve keeps at most this many points
WRITER_STAT_KEYS = ("points_written", "requests", "retries", "duplicates_collapsed", "undo_reads")


@dataclass
class BookCounters:
    """This attempt's figures; the per-unit counts in the progress markers are the durable ones."""

    units_done: int = 0
    files_done: int = 0
    computed_tokens: int = 0
    micro_batches: int = 0
    prep_seconds: float = 0.0
    embed_seconds: float = 0.0
    write_seconds: float = 0.0  # summed over the writer actors
    checkpoint_seconds: float = 0.0  # the driver's writes of unit parts and markers
    sink_seconds: float = 0.0  # everything the driver does per batch, checkpoints included
    ack_bytes: int = 0  # Arrow bytes of the acknowledgement batches that reached the driver
    totals: collections.Counter = field(default_factory=collections.Counter)
    rejected: collections.Counter = field(default_factory=collections.Counter)
    writer: collections.Counter = field(default_factory=collections.Counter)  # summed writer stats
    writer_pids: set = field(default_factory=set)
    throughput: list = field(default_factory=list)  # (seconds since start, docs read), thinned
    precisions: set = field(default_factory=set)  # the dtypes the embed actors' models ran in
    first_embed_at: float | None = None  # Unix time the first embed call of this attempt began


@dataclass
class _Unit:
    end: UnitEnd | None = None
    counts: collections.Counter = field(default_factory=collections.Counter)
    rejected: collections.Counter = field(default_factory=collections.Counter)
    manifest: list = field(default_factory=list)  # (doc_id, content_hash, payload_hash, n_chunks) rows
    manifest_tables: list = field(default_factory=list)  # the same, as Arrow slices (the common case)
    dead: list = field(default_factory=list)


class AckBook:
    """`consume(batch)` for each acknowledgement batch, then `close()`."""

    def __init__(self, progress, run_id: str, unit_rows: int, clock=time.monotonic):
        self.progress, self.run_id, self.unit_rows = progress, run_id, int(unit_rows)
        self.counters = BookCounters()
        self._open: dict[tuple[str, int], _Unit] = {}
        self._clock, self._start = clock, clock()
        self._sample_every, self._read_seen, self._batches = 1, 0, 0
        self._parts: dict[tuple[str, int], list[dict]] = {}  # documents Ray cut between chunks, until whole
        self.strays: list[tuple[str, int]] = []  # (doc_id, chunk) written for documents that were then rejected

    def consume(self, batch: pa.Table) -> None:
        start = time.perf_counter()
        bulk = FORBIDDEN_COLUMNS.intersection(batch.column_names)
        if bulk:
            raise RuntimeError(f"the driver was sent {sorted(bulk)}: vectors, texts and payloads must end at the "
                               "writer stage")
        try:
            self.counters.ack_bytes += batch.nbytes
            whole = pc.and_(pc.and_(pc.is_null(batch.column("reject_stage")), pc.is_null(batch.column("reject_reason"))),
                            pc.equal(batch.column("chunks_here"), batch.column("n_chunks")))
            whole = pc.fill_null(whole, False)
            self._add_documents(batch.filter(whole))  # the common case, column by column
            for row in batch.filter(pc.invert(whole)).to_pylist():  # markers, stats, rejects, parts
                self._consume_row(row)
            self._sample()
        finally:
            self.counters.sink_seconds += time.perf_counter() - start

    def _consume_row(self, row: dict) -> None:
        stage = row["reject_stage"]
        if stage == STATS_STAGE:
            self._add_stats(json.loads(row["reject_detail"]))
            return
        if stage == EOF_STAGE:
            end = UnitEnd.from_json(row["reject_detail"])
            key = (row["_file"], end.unit)
            self._unit(key).end = end
        else:
            key = (row["_file"], unit_of(row["_line"], self.unit_rows))
            unit = self._unit(key)
            if row["n_chunks"] and row["chunks_here"] < row["n_chunks"]:
                row = self._join_part(row)
                if row is None:
                    return  # more parts of this document are on their way
            unit.counts["read"] += 1
            self._read_seen += 1
            if row["reject_reason"] is not None:
                unit.rejected[row["reject_reason"]] += 1
                unit.dead.append({"run_id": self.run_id, "doc_id": row["doc_id"], "reason": row["reject_reason"],
                                  "stage": row["reject_stage"], "file": row["_file"], "line": row["_line"],
                                  "original_row": row["original_row"], "detail": row["reject_detail"]})
            else:
                n = int(row["n_chunks"])
                unit.counts["docs_upserted"] += 1
                unit.counts["chunks"] += n
                unit.counts["points_upserted"] += n  # acknowledged by Qdrant before the ack row left the writer
                unit.counts["real_tokens"] += int(row["n_tokens"])
                unit.counts["truncated"] += int(row["truncated"])
                unit.manifest.append((row["doc_id"], row["content_hash"], row["payload_hash"], n))
        self._maybe_finish(key)

    def _add_documents(self, docs: pa.Table) -> None:
        """Count whole, written documents unit by unit, without a Python object per row."""
        if docs.num_rows == 0:
            return
        files = pc.cast(docs.column("_file"), pa.string()).to_numpy(zero_copy_only=False)
        units = np.maximum(docs.column("_line").to_numpy() - 1, 0) // self.unit_rows
        order = np.lexsort((units, files))
        files, units = files[order], units[order]
        docs = docs.take(pa.array(order))
        cuts = np.flatnonzero((files[1:] != files[:-1]) | (units[1:] != units[:-1])) + 1
        for lo, hi in zip([0, *cuts.tolist()], [*cuts.tolist(), len(order)]):
            key = (str(files[lo]), int(units[lo]))
            part = docs.slice(lo, hi - lo)
            unit = self._unit(key)
            chunks = int(pc.sum(part.column("n_chunks")).as_py())
            unit.counts.update({"read": hi - lo, "docs_upserted": hi - lo, "chunks": chunks,
                                "points_upserted": chunks,  # acknowledged by Qdrant before the ack row left the writer
                                "real_tokens": int(pc.sum(part.column("n_tokens")).as_py()),
                                "truncated": int(pc.sum(part.column("truncated")).as_py())})
            unit.manifest_tables.append(part.select(list(MANIFEST_SCHEMA.names)))
            self._read_seen += hi - lo
            self._maybe_finish(key)

    def _maybe_finish(self, key: tuple[str, int]) -> None:
        unit = self._open[key]
        if unit.end is not None and unit.counts["read"] >= unit.end.expected:
            if unit.counts["read"] > unit.end.expected:
                raise RuntimeError(f"{key[0]} unit {key[1]}: {unit.counts['read']} rows acknowledged, but the "
                                   f"reader sent {unit.end.expected}")
            self._finish(key, self._open.pop(key))

    def _join_part(self, part: dict) -> dict | None:
        """Collect the parts of a document that Ray cut between chunks; the whole document once all its
        chunks are acknowledged. If any part was rejected, the parts that were written are strays,
        deleted after the load pass (`strays`)."""
        key = (part["_file"], part["_line"])
        parts = self._parts.setdefault(key, [])
        parts.append(part)
        if sum(p["chunks_here"] for p in parts) < part["n_chunks"]:
            return None
        del self._parts[key]
        first = min(parts, key=lambda p: p["chunk_lo"])
        bad = next((p for p in parts if p["reject_stage"] is not None), None)
        whole = {**first, "chunk_lo": 0, "chunks_here": first["n_chunks"],
                 "n_tokens": sum(p["n_tokens"] for p in parts), "truncated": sum(p["truncated"] for p in parts),
                 "original_row": next((p["original_row"] for p in parts if p["original_row"]), None)}
        if bad is None:
            return {**whole, "reject_reason": None, "reject_stage": None, "reject_detail": None}
        self.strays.extend((first["doc_id"], c) for p in parts if p["reject_stage"] is None
                           for c in range(p["chunk_lo"], p["chunk_lo"] + p["chunks_here"]))
        return {**whole, "reject_reason": bad["reject_reason"], "reject_stage": bad["reject_stage"],
                "reject_detail": bad["reject_detail"]}

    def _unit(self, key: tuple[str, int]) -> _Unit:
        unit = self._open.get(key)
        if unit is None:
            unit = self._open[key] = _Unit()
            self.progress.mark_started(key[0], key[1])
        return unit

    def _add_stats(self, stats: dict) -> None:
        c = self.counters
        c.prep_seconds += float(stats.get("prep_seconds", 0))
        c.embed_seconds += float(stats.get("embed_seconds", 0))
        c.computed_tokens += int(stats.get("computed_tokens", 0))
        c.micro_batches += int(stats.get("micro_batches", 0))
        c.write_seconds += float(stats.get("write_seconds", 0))
        c.precisions.update(stats.get("precisions") or [])
        if stats.get("embed_started"):
            started = float(stats["embed_started"])
            c.first_embed_at = started if c.first_embed_at is None else min(c.first_embed_at, started)
        c.writer.update({k: int(stats.get(k, 0)) for k in WRITER_STAT_KEYS})
        if "pid" in stats:
            c.writer_pids.add(int(stats["pid"]))

    def _finish(self, key: tuple[str, int], unit: _Unit) -> None:
        file, number = key
        counts = {**{k: int(unit.counts[k]) for k in COUNT_KEYS}, "rejected": dict(unit.rejected)}
        columns = list(zip(*unit.manifest)) if unit.manifest else [[], [], [], []]
        manifest = pa.concat_tables([pa.Table.from_arrays(
            [pa.array(col, t) for col, t in zip(columns, MANIFEST_SCHEMA.types)], schema=MANIFEST_SCHEMA),
            *(t.cast(MANIFEST_SCHEMA) for t in unit.manifest_tables)])
        dead = pa.Table.from_pylist(unit.dead, schema=DEAD_LETTER_SCHEMA) if unit.dead else None
        t = time.perf_counter()
        self.progress.mark_done(file, counts, manifest, dead, unit=number, units=unit.end.units)
        self.counters.checkpoint_seconds += time.perf_counter() - t
        c = self.counters
        c.units_done += 1
        c.totals.update({k: counts[k] for k in COUNT_KEYS})
        c.rejected.update(unit.rejected)

    def _sample(self) -> None:
        """One throughput point per `_sample_every` batches; halve the sample when it is full."""
        c = self.counters
        self._batches += 1
        if self._batches % self._sample_every:
            return
        c.throughput.append((round(self._clock() - self._start, 3), self._read_seen))
        if len(c.throughput) >= THROUGHPUT_SAMPLES:
            c.throughput[:] = c.throughput[::2]
            self._sample_every *= 2

    def writer_stats(self) -> dict[str, int]:
        return {k: int(self.counters.writer[k]) for k in WRITER_STAT_KEYS}

    def close(self) -> None:
        """Every unit that was opened must have been finished: anything else is lost data."""
        if self._open:
            waiting = [(f, u, x.counts["read"], x.end.expected if x.end else None) for (f, u), x in self._open.items()]
            raise RuntimeError(f"{len(self._open)} checkpoint units never completed (file, unit, acknowledged, "
                               f"expected): {waiting[:5]}")
