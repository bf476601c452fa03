"""The scoring stage of the rerank job: a callable class for Ray Data `map_batches` (an actor pool) that
loads the Reranker once per actor. Each input row names a unit, a prepared part of whole queries
(pipeline/part_packing.py); the actor reads it from the run's staging folder, scores it query by
query, writes the unit's result part and dead letters there, and returns one acknowledgement row
(pipeline/rerank_acks.py) with the unit's counts and metric partials. Scores never leave the actor.

A query is scored in one call: its candidates run in chunks of at most `candidates_per_chunk`, each
chunk running the query's shared prefix once (Reranker.score_candidates), and `new_rank` (1..n over
the query's finite scores) is decided over all its chunks. A non-finite score is dead-lettered as
`non_finite_score`; the query's other candidates are ranked without it."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from qbatch.common.rerank_result_schema import RERANK_SCHEMA
from qbatch.pipeline.prepare_finish import write_dead_letters
from qbatch.pipeline.query_redaction import QueryRedactor
from qbatch.pipeline.ranking_metrics import RunMetrics
from qbatch.pipeline.rerank_acks import RESULT, ack_table, worker_identity
from qbatch.pipeline.rerank_rows import PREPARED_SCHEMA


def instruction_sha(instruction: str | None) -> str:
    """sha256 hex of the instruction the reranker really used (the default task when None)."""
    from qbatch.pipeline.qwen3_templates import DEFAULT_TASK

    return hashlib.sha256((instruction if instruction is not None else DEFAULT_TASK).encode()).hexdigest()


def new_ranks(scores: Sequence[float], valid: Sequence[bool], orig_ranks: Sequence[int | None],
              doc_ids: Sequence[str]) -> list[int | None]:
    """1..n by score descending over the valid candidates; ties by orig_rank (nulls last), then doc_id."""
    order = sorted((i for i in range(len(scores)) if valid[i]),
                   key=lambda i: (-float(scores[i]), orig_ranks[i] is None, orig_ranks[i] or 0, doc_ids[i]))
    ranks: list[int | None] = [None] * len(scores)
    for rank, i in enumerate(order, start=1):
        ranks[i] = rank
    return ranks


def score_dead_letter_name(unit: str) -> str:
    """The one dead-letter part a scored unit may have (its non-finite scores): named by the unit alone,
    so a resumed run finds it from the unit's checkpoint."""
    return f"score-{unit}"


def score_in_chunks(reranker: Any, query: str, documents: Sequence[str], instruction: str | None,
                    chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """`Reranker.score_candidates` over chunks of at most `chunk` documents: (scores, valid mask)."""
    parts = [reranker.score_candidates(query, documents[i:i + chunk], instruction)
             for i in range(0, len(documents), chunk)]
    if not parts:
        return np.zeros(0, np.float32), np.zeros(0, bool)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


class RerankStage:
    """Loads the model once in __init__; __call__ scores the units named by a batch of `unit` rows."""

    def __init__(self, reranker_kwargs: dict[str, Any], instruction: str | None, torch_threads: int | None,
                 staging: Any, redactor: QueryRedactor, model_name: str, run_id: str, candidates_per_chunk: int,
                 results: Any = None, constant_columns: dict[str, tuple[Any, pa.DataType]] | None = None):
        if torch_threads:
            import torch

            torch.set_num_threads(int(torch_threads))
        from qbatch.pipeline.reranker import Reranker

        self.reranker = Reranker.from_pretrained(**reranker_kwargs)
        self.instruction, self.staging, self.redactor = instruction, staging, redactor
        # Where result files go (qbatch.connectors.rerank_staging.ResultFiles); none = staging results/.
        self.results = results
        self.model_name, self.run_id, self.chunk = model_name, run_id, int(candidates_per_chunk)
        self.instruction_sha = instruction_sha(instruction)
        self.constant_columns = dict(constant_columns or {})  # e.g. run_date for a table format's files
        self.identity = worker_identity()

    def __call__(self, batch: pa.Table) -> pa.Table:
        return ack_table([row for unit in batch.column("unit").to_pylist() for row in self.score_unit(unit)])

    def score_unit(self, unit: str) -> list[dict]:
        started = time.perf_counter()
        self.staging.write_bytes(f"started/{unit}", b"")
        part = self.staging.read_table(f"prepared/{unit}.parquet", PREPARED_SCHEMA)
        truncated_before = self.reranker.counters.truncated
        metrics = RunMetrics()
        cols = {name: part.column(name).to_pylist() for name in PREPARED_SCHEMA.names}
        scores = np.zeros(part.num_rows, np.float32)
        valid = np.zeros(part.num_rows, bool)
        ranks: list[int | None] = [None] * part.num_rows
        ids = cols["query_id"]
        starts = [i for i in range(len(ids)) if i == 0 or ids[i] != ids[i - 1]] + [len(ids)]
        for lo, hi in zip(starts[:-1], starts[1:]):
            s, v = score_in_chunks(self.reranker, cols["query"][lo], cols["text"][lo:hi], self.instruction, self.chunk)
            scores[lo:hi], valid[lo:hi] = s, v
            ranks[lo:hi] = new_ranks(s, v, cols["orig_rank"][lo:hi], cols["doc_id"][lo:hi])
            ok = [i for i in range(lo, hi) if valid[i]]
            if ok:
                metrics.add_query([cols["orig_rank"][i] for i in ok], [ranks[i] for i in ok],
                                  [cols["label"][i] for i in ok], [float(scores[i]) for i in ok],
                                  [cols["doc_id"][i] for i in ok])
        result = self._result_rows(part, scores, valid, ranks)
        if self.results is None:
            name = f"results/{unit}.parquet"
            self.staging.write_table(name, result)
        else:
            name = self.results.write(unit, result)
        acks = write_dead_letters(self.staging, score_dead_letter_name(unit), self._non_finite(part, valid), "score",
                                  self.identity, unit=unit)
        acks.append({"phase": "score", **self.identity, "unit": unit, "part": name,
                     "part_kind": RESULT, "rows": result.num_rows, "pairs": part.num_rows,
                     "queries": len(starts) - 1, "seconds": time.perf_counter() - started,
                     "precision": self.reranker.precision, "non_finite": int((~valid).sum()),
                     "truncated": self.reranker.counters.truncated - truncated_before, "metrics": metrics.to_row()})
        return acks

    def _result_rows(self, part: pa.Table, scores: np.ndarray, valid: np.ndarray, ranks: list) -> pa.Table:
        keep = pa.array(valid)
        good = part.filter(keep)
        n = good.num_rows
        query = pa.array(self.redactor.redact_many(good.column("query").to_pylist()), pa.string())
        columns = {
            "query_id": good.column("query_id"), "query": query, "doc_id": good.column("doc_id"),
            "source": good.column("source"), "orig_rank": good.column("orig_rank"),
            "orig_score": good.column("orig_score"), "rerank_score": pa.array(scores[valid], pa.float32()),
            "new_rank": pa.array([r for r, v in zip(ranks, valid) if v], pa.int32()),
            "model": pa.array([self.model_name] * n, pa.string()),
            "instruction_sha": pa.array([self.instruction_sha] * n, pa.string()),
            "run_id": pa.array([self.run_id] * n, pa.string())}
        schema = RERANK_SCHEMA
        for name, (value, dtype) in self.constant_columns.items():
            columns[name] = pa.array([value] * n, dtype)
            schema = schema.append(pa.field(name, dtype, nullable=False))
        return pa.Table.from_pydict(columns, schema=schema)

    def _non_finite(self, part: pa.Table, valid: np.ndarray) -> pa.Table:
        bad = part.filter(pa.array(~valid))
        rows = bad.select(["query_id", "query", "doc_id", "source", "orig_rank", "orig_score", "label"]).to_pylist()
        return pa.table({
            "doc_id": pa.array([r["doc_id"] for r in rows], pa.string()),
            "reason": pa.array(["non_finite_score"] * len(rows), pa.string()),
            "stage": pa.array(["rerank"] * len(rows), pa.string()), "file": pa.nulls(len(rows), pa.string()),
            "line": pa.nulls(len(rows), pa.int64()),
            "original_row": pa.array([self.redactor.row_json(r, "query") for r in rows], pa.string()),
            "detail": pa.array(["the reranker produced a NaN/inf score for this pair"] * len(rows), pa.string())})
