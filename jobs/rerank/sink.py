"""The driver's end of `qbatch rerank`: scored candidate rows (pipeline/rerank_stage.SCORED_SCHEMA) ->
result-table parts, dead letters for non-finite scores, and per-query metrics.

Rows of one query may arrive split across batches; a query's metrics are taken once all of its
`group_size` rows are in, so the driver only holds queries it has partly received."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from qbatch.pipeline.query_log import reject
from qbatch.pipeline.query_redaction import QueryRedactor
from qbatch.pipeline.ranking_metrics import RunMetrics

_ROWS_PER_PART = 250_000


class ScoredSink:
    def __init__(self, table_writer, dead_letter, redactor: QueryRedactor, model: str, instruction_sha: str,
                 run_id: str):
        self.table, self.dead_letter, self.redactor = table_writer, dead_letter, redactor
        self.model, self.instruction_sha, self.run_id = model, instruction_sha, run_id
        self.metrics = RunMetrics()
        self.scored_pairs = 0
        self.has_labels = False
        self.precisions: set[str] = set()  # the dtypes the actors' models ran in
        self._pending: dict[str, list[dict]] = {}
        self._buffer: list[pa.Table] = []
        self._buffered = 0

    def add(self, batch: pa.Table) -> None:
        valid = batch.column("valid")
        bad = batch.filter(pc.invert(valid))
        if bad.num_rows:
            self.dead_letter.write([self._non_finite(r) for r in bad.to_pylist()])
        good = batch.filter(valid)
        self.scored_pairs += good.num_rows
        self.has_labels = self.has_labels or good.column("label").null_count < good.num_rows
        self.precisions.update(pc.unique(batch.column("precision")).to_pylist())
        self._track(batch)
        if good.num_rows:
            self._buffer.append(self._output(good))
            self._buffered += good.num_rows
            if self._buffered >= _ROWS_PER_PART:
                self.flush()

    def flush(self) -> None:
        if self._buffer:
            self.table.write(pa.concat_tables(self._buffer))
        self._buffer, self._buffered = [], 0

    def finish(self) -> None:
        self.flush()
        if self._pending:  # cannot happen unless a stage dropped rows: say so instead of losing metrics quietly
            raise RuntimeError(f"{len(self._pending)} queries came back from the rerank stage incomplete")

    def _output(self, good: pa.Table) -> pa.Table:
        n = good.num_rows
        query = pa.array(self.redactor.redact_many(good.column("query").to_pylist()), pa.string())
        return pa.table({
            "query_id": good.column("query_id"), "query": query, "doc_id": good.column("doc_id"),
            "source": good.column("source"), "orig_rank": good.column("orig_rank"),
            "orig_score": good.column("orig_score"), "rerank_score": good.column("rerank_score"),
            "new_rank": good.column("new_rank"), "model": pa.array([self.model] * n, pa.string()),
            "instruction_sha": pa.array([self.instruction_sha] * n, pa.string()),
            "run_id": pa.array([self.run_id] * n, pa.string())})

    def _track(self, batch: pa.Table) -> None:
        for row in batch.select(["query_id", "doc_id", "orig_rank", "label", "rerank_score", "new_rank", "valid",
                                 "group_size"]).to_pylist():
            rows = self._pending.setdefault(row["query_id"], [])
            rows.append(row)
            if len(rows) == row["group_size"]:
                del self._pending[row["query_id"]]
                ok = [r for r in rows if r["valid"]]
                if ok:
                    self.metrics.add_query([r["orig_rank"] for r in ok], [r["new_rank"] for r in ok],
                                           [r["label"] for r in ok], [r["rerank_score"] for r in ok],
                                           [r["doc_id"] for r in ok])

    def _non_finite(self, r: dict) -> dict:
        original = {k: r[k] for k in ("query_id", "query", "doc_id", "source", "orig_rank", "orig_score", "label")}
        return reject("non_finite_score", "rerank", "the reranker produced a NaN/inf score for this pair",
                      doc_id=r["doc_id"], original_row=self.redactor.row_json(original, "query"))
