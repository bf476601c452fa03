"""The rerank stage: a callable class for Ray Data `map_batches` that loads the Reranker once per actor
and turns per-query rows (pipeline/query_log.GROUP_SCHEMA) into one row per candidate (SCORED_SCHEMA).

All candidates of a query arrive in one row, so `score_candidates` runs the query's shared prefix
once, and `new_rank` (1..n over the query's finite scores) is decided here. A candidate whose score is
non-finite keeps `valid = False` and no rank; the driver dead-letters it. `group_size` (the query's
candidates, valid or not) lets the driver know when it holds a whole query."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

SCORED_SCHEMA = pa.schema([
    pa.field("query_id", pa.string()), pa.field("query", pa.string()), pa.field("doc_id", pa.string()),
    pa.field("source", pa.string()), pa.field("orig_rank", pa.int64()), pa.field("orig_score", pa.float64()),
    pa.field("label", pa.float64()), pa.field("rerank_score", pa.float32()), pa.field("new_rank", pa.int32()),
    pa.field("valid", pa.bool_()), pa.field("group_size", pa.int32()),
    pa.field("precision", pa.string()),  # the dtype the actor's model ran in, for the run report
])


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


class RerankStage:
    """Loads the model once in __init__; __call__ maps a pyarrow batch of query groups."""

    def __init__(self, reranker_kwargs: dict[str, Any], instruction: str | None, torch_threads: int | None = None):
        if torch_threads:
            import torch

            torch.set_num_threads(int(torch_threads))
        from qbatch.pipeline.reranker import Reranker

        self.reranker = Reranker.from_pretrained(**reranker_kwargs)
        self.instruction = instruction

    def __call__(self, batch: pa.Table) -> pa.Table:
        cols: dict[str, list] = {name: [] for name in SCORED_SCHEMA.names}
        for g in batch.to_pylist():
            doc_ids, n = g["doc_ids"], len(g["doc_ids"])
            if n == 0:
                continue
            scores, valid = self.reranker.score_candidates(g["query"], g["texts"], self.instruction)
            ranks = new_ranks(scores, valid, g["orig_ranks"], doc_ids)
            for i in range(n):
                cols["query_id"].append(g["query_id"])
                cols["query"].append(g["query"])
                cols["doc_id"].append(doc_ids[i])
                cols["source"].append(g["sources"][i])
                cols["orig_rank"].append(g["orig_ranks"][i])
                cols["orig_score"].append(g["orig_scores"][i])
                cols["label"].append(g["labels"][i])
                cols["rerank_score"].append(float(scores[i]) if valid[i] else np.nan)
                cols["new_rank"].append(ranks[i])
                cols["valid"].append(bool(valid[i]))
                cols["group_size"].append(n)
                cols["precision"].append(self.reranker.precision)
        return pa.table(cols, schema=SCORED_SCHEMA)
