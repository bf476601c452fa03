"""Ranking metrics for one query, and their aggregation over a run. Pure; no I/O.

A query's ranking is given as its candidates' relevance labels in rank order (best first); a
candidate is relevant when its label > 0. Labels may be binary (0/1) or graded (0, 1, 2, ...).

    DCG@k   = sum_{i=1..min(k,n)} (2^rel_i - 1) / log2(i + 1)
    nDCG@k  = DCG@k / IDCG@k, IDCG@k = DCG@k of the labels sorted descending; 0 when IDCG@k = 0
    MRR@k   = 1 / (position of the first relevant candidate) if it is within the top k, else 0
    recall@k = relevant candidates in the top k / all relevant candidates of the query; 0 when none

Recall counts the query's relevant candidates among those it has, so it measures the reordering,
not the retriever.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

# Candidate-count buckets for the per-bucket tables: (name, lowest count, highest count).
BUCKETS: tuple[tuple[str, int, float], ...] = (("1-10", 1, 10), ("11-50", 11, 50), ("51+", 51, math.inf))
METRIC_NAMES = ("ndcg@10", "mrr@10", "recall@10")
_SAME_EPS = 1e-9


def dcg_at_k(labels: Sequence[float], k: int) -> float:
    """Discounted cumulative gain with gain 2^rel - 1 and discount log2(position + 1)."""
    rel = np.asarray(labels[:k], dtype=np.float64)
    if rel.size == 0:
        return 0.0
    return float(np.sum((np.power(2.0, rel) - 1.0) / np.log2(np.arange(2, rel.size + 2))))


def ndcg_at_k(labels: Sequence[float], k: int = 10) -> float:
    ideal = dcg_at_k(sorted(labels, reverse=True), k)
    return dcg_at_k(labels, k) / ideal if ideal > 0 else 0.0


def mrr_at_k(labels: Sequence[float], k: int = 10) -> float:
    for i, rel in enumerate(labels[:k], start=1):
        if rel > 0:
            return 1.0 / i
    return 0.0


def recall_at_k(labels: Sequence[float], k: int = 10) -> float:
    total = sum(1 for rel in labels if rel > 0)
    return sum(1 for rel in labels[:k] if rel > 0) / total if total else 0.0


def labels_in_order(ranks: Sequence[int | None], labels: Sequence[float | None],
                    tie_keys: Sequence[str]) -> list[float]:
    """Labels sorted by rank (null ranks last, then by tie key); a null label counts as 0."""
    order = sorted(range(len(labels)), key=lambda i: (ranks[i] is None, ranks[i] or 0, tie_keys[i]))
    return [float(labels[i] or 0.0) for i in order]


def query_metrics(labels_ranked: Sequence[float], k: int = 10) -> dict[str, float]:
    return {"ndcg@10": ndcg_at_k(labels_ranked, k), "mrr@10": mrr_at_k(labels_ranked, k),
            "recall@10": recall_at_k(labels_ranked, k)}


def bucket_of(n_candidates: int) -> str:
    for name, lo, hi in BUCKETS:
        if lo <= n_candidates <= hi:
            return name
    return BUCKETS[0][0]


@dataclass
class _Sums:
    queries: int = 0
    before: dict[str, float] = field(default_factory=lambda: dict.fromkeys(METRIC_NAMES, 0.0))
    after: dict[str, float] = field(default_factory=lambda: dict.fromkeys(METRIC_NAMES, 0.0))

    def add(self, before: dict[str, float], after: dict[str, float]) -> None:
        self.queries += 1
        for name in METRIC_NAMES:
            self.before[name] += before[name]
            self.after[name] += after[name]

    def means(self) -> dict:
        n = max(self.queries, 1)
        return {"queries": self.queries,
                "before": {m: self.before[m] / n for m in METRIC_NAMES},
                "after": {m: self.after[m] / n for m in METRIC_NAMES}}


class RunMetrics:
    """Additive per-run tallies; `add_query` once per scored query, `summary()` at the end."""

    def __init__(self) -> None:
        self.labelled = _Sums()
        self.by_bucket: dict[str, _Sums] = {name: _Sums() for name, _, _ in BUCKETS}
        self.better = self.worse = self.same = 0
        self.queries = 0
        self.scores: list[np.ndarray] = []
        self.abs_rank_change_sum = 0.0
        self.rank_change_rows = 0
        self.top1_changed = 0
        self.top1_comparable = 0

    def add_query(self, orig_ranks: Sequence[int | None], new_ranks: Sequence[int], labels: Sequence[float | None],
                  scores: Sequence[float], doc_ids: Sequence[str]) -> None:
        """One query's scored candidates (parallel lists); labels may be all None."""
        self.queries += 1
        self.scores.append(np.asarray(scores, dtype=np.float32))
        known = [(o, n) for o, n in zip(orig_ranks, new_ranks) if o is not None]
        self.abs_rank_change_sum += sum(abs(o - n) for o, n in known)
        self.rank_change_rows += len(known)
        if known:
            self.top1_comparable += 1
            orig_top = min(range(len(doc_ids)), key=lambda i: (orig_ranks[i] is None, orig_ranks[i] or 0, doc_ids[i]))
            self.top1_changed += int(new_ranks[orig_top] != 1)
        if all(label is None for label in labels) or not any((label or 0) > 0 for label in labels):
            return  # no relevant candidate: every metric is 0 before and after, it would only dilute
        before = query_metrics(labels_in_order(orig_ranks, labels, doc_ids))
        after = query_metrics(labels_in_order(list(new_ranks), labels, doc_ids))
        self.labelled.add(before, after)
        self.by_bucket[bucket_of(len(labels))].add(before, after)
        delta = after["ndcg@10"] - before["ndcg@10"]
        if delta > _SAME_EPS:
            self.better += 1
        elif delta < -_SAME_EPS:
            self.worse += 1
        else:
            self.same += 1

    def summary(self) -> dict:
        all_scores = np.concatenate(self.scores) if self.scores else np.zeros(0, np.float32)
        out: dict = {"queries": self.queries, "scored_pairs": int(all_scores.size)}
        if all_scores.size:
            out["score_distribution"] = {
                "min": float(all_scores.min()), "p50": float(np.percentile(all_scores, 50)),
                "p90": float(np.percentile(all_scores, 90)), "max": float(all_scores.max()),
                "mean": float(all_scores.mean())}
        out["rank_change"] = {
            "mean_abs_delta_rank": self.abs_rank_change_sum / self.rank_change_rows if self.rank_change_rows else None,
            "top1_changed_share": self.top1_changed / self.top1_comparable if self.top1_comparable else None}
        if self.labelled.queries:
            out["labelled"] = {
                "overall": self.labelled.means(),
                "by_candidate_count": {name: s.means() for name, s in self.by_bucket.items() if s.queries},
                "ndcg@10_change": {"better": self.better, "worse": self.worse, "same": self.same}}
        return out
