"""Shared-prefix scoring for one query's candidates: run the common prefix once, reuse its KV cache.

Exact by construction (QWEN3.md): the prefix ends at `<Document>:` without the space, because BPE
merges that space into the document's first word. A pair is only shared when
`tok(head) + tok(" " + doc) == tok(head + " " + doc)` and the middle needs no truncation; every
other pair is scored the official, unshared way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from qbatch.pipeline.batch_counters import BatchCounters
from qbatch.pipeline.batch_planner import MicroBatch, plan_padded_batches
from qbatch.pipeline.micro_batch_runner import run_micro_batches
from qbatch.pipeline.model_inputs import pad_ids
from qbatch.pipeline.qwen3_templates import format_rerank_head

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass
class SharedPlan:
    """`head`: shared token prefix; `tails[i]`: candidate i's own tokens (suffix included).

    `unshared[i]`: the full official sequence of each candidate that cannot share the prefix.
    """

    head: list[int]
    tails: dict[int, list[int]] = field(default_factory=dict)
    unshared: dict[int, list[int]] = field(default_factory=dict)
    truncated: int = 0


def plan_shared(tokenizer: Any, prefix_ids: list[int], suffix_ids: list[int], middle_budget: int,
                query: str, documents: Sequence[str], instruction: str | None) -> SharedPlan:
    """Split each candidate into shared head + tail, verifying the split against the whole middle."""
    head_text = format_rerank_head(query, instruction)
    head_mid = tokenizer(head_text, add_special_tokens=False)["input_ids"]
    tails = tokenizer([" " + doc for doc in documents], add_special_tokens=False)["input_ids"]
    middles = tokenizer([f"{head_text} {doc}" for doc in documents], add_special_tokens=False)["input_ids"]
    plan = SharedPlan(head=list(prefix_ids) + list(head_mid))
    for i, (tail, middle) in enumerate(zip(tails, middles)):
        if len(middle) > middle_budget:
            # Official truncation cuts the whole middle's tail; run it the official way.
            plan.truncated += 1
            plan.unshared[i] = list(prefix_ids) + list(middle[:middle_budget]) + list(suffix_ids)
        elif list(head_mid) + list(tail) != list(middle):
            plan.unshared[i] = list(prefix_ids) + list(middle) + list(suffix_ids)
        else:
            plan.tails[i] = list(tail) + list(suffix_ids)
    return plan


def score_shared_tails(
    base: Any, head: list[int], tails: list[list[int]], to_scores: Callable[["torch.Tensor"], np.ndarray],
    *, pad_id: int, max_batch_tokens: int, device: "torch.device", counters: BatchCounters,
) -> np.ndarray:
    """Scores of `tails` after a shared `head`, in input order; the head runs once per call."""
    import torch
    from transformers import DynamicCache

    if not tails:
        return np.zeros(0, dtype=np.float32)
    n_head = len(head)
    with torch.inference_mode():
        out = base(input_ids=torch.tensor([head], device=device), use_cache=True)
    head_kv = [(layer.keys, layer.values) for layer in out.cache.layers]
    counters.real_tokens += n_head
    counters.computed_tokens += n_head
    counters.micro_batches += 1
    counters.reused_tokens += n_head * (len(tails) - 1)

    def run_one(batch: MicroBatch) -> np.ndarray:
        rows = [tails[i] for i in batch.indices]
        # Right-padded tails: real tokens sit right after the prefix, so their positions continue it
        # and padding only ever follows them (invisible under the causal mask).
        ids, tail_mask = pad_ids(rows, pad_id, left=False, device=device)
        n_rows, width = ids.shape
        mask = torch.cat([torch.ones(n_rows, n_head, dtype=tail_mask.dtype, device=device), tail_mask], dim=1)
        positions = (torch.arange(width, device=device) + n_head).unsqueeze(0).expand(n_rows, -1)
        cache = DynamicCache(ddp_cache_data=[(k.expand(n_rows, -1, -1, -1), v.expand(n_rows, -1, -1, -1))
                                             for k, v in head_kv])
        with torch.inference_mode():
            hidden = base(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache,
                          use_cache=True).last_hidden_state
            last = tail_mask.sum(dim=1) - 1
            scores = to_scores(hidden[torch.arange(n_rows, device=device), last])
        counters.real_tokens += batch.real_tokens
        counters.computed_tokens += batch.padded_tokens
        counters.micro_batches += 1
        return scores

    # Budget rows x (head + longest tail): each row attends over the head and holds its own KV copy.
    batches = plan_padded_batches([len(t) for t in tails], max_batch_tokens, row_overhead=n_head)
    return run_micro_batches(batches, run_one, device)
