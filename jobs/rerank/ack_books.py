"""The driver's books of a rerank run: it only adds up acknowledgement rows (pipeline/rerank_acks.py).

Prepare: the units (prepared parts: name, pairs, queries), the dead-letter parts and their reasons,
and the workers' counts. Score: each unit's acknowledgement is written to the staging folder as the
unit's checkpoint (`units/{unit}.json`) as soon as it arrives; the metric partials are merged and the
result parts noted. Everything here is per unit or per part, never per row, query, candidate or
document, and a batch of any other schema is refused."""

from __future__ import annotations

import collections
import math
import time
from dataclasses import dataclass, field

import pyarrow as pa

from qbatch.pipeline.rerank_acks import ACK_SCHEMA, COUNT_COLUMNS, DEAD_LETTER, PREPARED, RESULT, metrics_of
from qbatch.pipeline.ranking_metrics import RunMetrics


@dataclass
class PhaseBook:
    """What one phase's acknowledgements added up to."""

    counts: collections.Counter = field(default_factory=collections.Counter)
    reasons: collections.Counter = field(default_factory=collections.Counter)
    dead_letter_parts: dict = field(default_factory=dict)  # part -> rows, insertion-ordered
    nodes: set = field(default_factory=set)
    pids: set = field(default_factory=set)
    worker_seconds: float = 0.0
    ack_batches: int = 0
    ack_rows: int = 0
    ack_bytes: int = 0
    driver_seconds: float = 0.0


def check_schema(batch: pa.Table) -> None:
    if not batch.schema.equals(ACK_SCHEMA):
        raise RuntimeError(f"the driver was sent a batch that is not acknowledgement rows: {batch.schema.names[:12]}")


class RerankBooks:
    """`consume_prepare(batch)` during prepare, `consume_score(batch)` during scoring."""

    def __init__(self, staging):
        self.staging = staging
        self.prepare, self.score = PhaseBook(), PhaseBook()
        self.units: dict[str, tuple[int, int]] = {}  # prepared part -> (pairs, queries)
        self.done: dict[str, int] = {}  # scored unit -> result rows
        self.metrics = RunMetrics()
        self.precisions: set[str] = set()
        self.first_unit_s: float | None = None
        self._started = time.perf_counter()

    def _common(self, book: PhaseBook, batch: pa.Table) -> list[dict]:
        check_schema(batch)
        book.ack_batches += 1
        book.ack_rows += batch.num_rows
        book.ack_bytes += batch.nbytes
        rows = batch.to_pylist()
        for row in rows:
            if row["node_id"]:
                book.nodes.add(row["node_id"])
            if row["pid"] is not None:
                book.pids.add(int(row["pid"]))
            book.worker_seconds += row["seconds"] or 0.0
            if row["part_kind"] in (None, RESULT):  # a worker's counts (a prepared part's rows go to `units`)
                book.counts.update({k: int(row[k]) for k in COUNT_COLUMNS if row[k]})
            if row["part_kind"] == DEAD_LETTER:
                book.reasons[row["reason"]] += int(row["rows"])
                book.dead_letter_parts[row["part"]] = book.dead_letter_parts.get(row["part"], 0) + int(row["rows"])
        return rows

    def consume_prepare(self, batch: pa.Table) -> None:
        t = time.perf_counter()
        for row in self._common(self.prepare, batch):
            if row["part_kind"] == PREPARED:
                self.units[row["unit"]] = (int(row["rows"]), int(row["queries"]))
        self.prepare.driver_seconds += time.perf_counter() - t

    def consume_score(self, batch: pa.Table) -> None:
        t = time.perf_counter()
        for row in self._common(self.score, batch):
            if row["part_kind"] == RESULT:
                self.record_done(row)
                # The checkpoint: this unit's result part and figures are final; a resume skips it.
                self.staging.write_json(f"units/{row['unit']}.json", row)
                if self.first_unit_s is None:
                    self.first_unit_s = time.perf_counter() - self._started
        self.score.driver_seconds += time.perf_counter() - t

    def record_done(self, row: dict) -> None:
        """A scored unit's acknowledgement: from this attempt, or an earlier one's checkpoint."""
        self.done[row["unit"]] = int(row["rows"])
        self.metrics.merge_row(metrics_of(row))
        if row.get("precision"):
            self.precisions.add(row["precision"])

    def restore_done(self, row: dict) -> None:
        """An earlier attempt's checkpointed unit: its figures count, its dead letters stay acknowledged."""
        from qbatch.pipeline.rerank_stage import score_dead_letter_name

        self.record_done(row)
        for key in ("non_finite", "truncated"):
            self.score.counts[key] += int(row.get(key) or 0)
        if row.get("non_finite"):
            self.score.reasons["non_finite_score"] += int(row["non_finite"])
            self.score.dead_letter_parts[f"dead_letter/{score_dead_letter_name(row['unit'])}.parquet"] = \
                int(row["non_finite"])

    @property
    def pairs(self) -> int:
        return sum(p for p, _ in self.units.values())

    @staticmethod
    def ack_bytes_per_unit(book: PhaseBook, units: int) -> float:
        return book.ack_bytes / units if units else math.nan
