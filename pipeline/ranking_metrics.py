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


SCORE_BINS = 100  # the score histogram: P(yes) in [0, 1] in bins of 0.01
QUANTILE_PRECISION = 1.0 / SCORE_BINS  # p50 / p90 from the histogram are within one bin of the exact value


def _bucket_key(name: str) -> str:
    return "b" + name.replace("-", "_").replace("+", "plus")


def partial_columns() -> list[tuple[str, str]]:
    """(column, kind) of every additive figure of RunMetrics, kind "int" or "float": the fixed columns
    a scoring worker sends the driver instead of rows or scores."""
    cols = [("queries", "int"), ("scored_pairs", "int"), ("labelled_queries", "int")]
    for side in ("before", "after"):
        cols += [(f"{side}_{m.replace('@', '_at_')}", "float") for m in METRIC_NAMES]
    for name, _, _ in BUCKETS:
        key = _bucket_key(name)
        cols.append((f"{key}_queries", "int"))
        for side in ("before", "after"):
            cols += [(f"{key}_{side}_{m.replace('@', '_at_')}", "float") for m in METRIC_NAMES]
    cols += [("better", "int"), ("worse", "int"), ("same", "int"), ("abs_rank_change_sum", "float"),
             ("rank_change_rows", "int"), ("top1_changed", "int"), ("top1_comparable", "int"),
             ("score_sum", "float"), ("score_min", "float"), ("score_max", "float")]
    cols += [(f"score_bin_{i:02d}", "int") for i in range(SCORE_BINS)]
    return cols


class RunMetrics:
    """Additive per-run figures: `add_query` once per scored query in the worker that scored it,
    `to_row()` for its acknowledgement, `merge_row(row)` on the driver, `summary()` at the end. Nothing
    here grows with queries or pairs: scores are kept as a fixed 100-bin histogram plus min, max, sum."""

    def __init__(self) -> None:
        self.v: dict[str, float] = {name: (0.0 if kind == "float" else 0) for name, kind in partial_columns()}
        self.v["score_min"], self.v["score_max"] = math.inf, -math.inf

    def add_query(self, orig_ranks: Sequence[int | None], new_ranks: Sequence[int], labels: Sequence[float | None],
                  scores: Sequence[float], doc_ids: Sequence[str]) -> None:
        """One query's scored candidates (parallel lists); labels may be all None."""
        v = self.v
        v["queries"] += 1
        arr = np.asarray(scores, dtype=np.float64)
        if arr.size:
            v["scored_pairs"] += int(arr.size)
            v["score_sum"] += float(arr.sum())
            v["score_min"] = min(v["score_min"], float(arr.min()))
            v["score_max"] = max(v["score_max"], float(arr.max()))
            bins = np.bincount(np.clip((arr * SCORE_BINS).astype(np.int64), 0, SCORE_BINS - 1), minlength=SCORE_BINS)
            for i in np.flatnonzero(bins):
                v[f"score_bin_{i:02d}"] += int(bins[i])
        known = [(o, n) for o, n in zip(orig_ranks, new_ranks) if o is not None]
        v["abs_rank_change_sum"] += float(sum(abs(o - n) for o, n in known))
        v["rank_change_rows"] += len(known)
        if known:
            v["top1_comparable"] += 1
            orig_top = min(range(len(doc_ids)), key=lambda i: (orig_ranks[i] is None, orig_ranks[i] or 0, doc_ids[i]))
            v["top1_changed"] += int(new_ranks[orig_top] != 1)
        if all(label is None for label in labels) or not any((label or 0) > 0 for label in labels):
            return  # no relevant candidate: every metric is 0 before and after, it would only dilute
        before = query_metrics(labels_in_order(orig_ranks, labels, doc_ids))
        after = query_metrics(labels_in_order(list(new_ranks), labels, doc_ids))
        key = _bucket_key(bucket_of(len(labels)))
        v["labelled_queries"] += 1
        v[f"{key}_queries"] += 1
        for side, values in (("before", before), ("after", after)):
            for m in METRIC_NAMES:
                col = f"{side}_{m.replace('@', '_at_')}"
                v[col] += values[m]
                v[f"{key}_{col}"] += values[m]
        delta = after["ndcg@10"] - before["ndcg@10"]
        v["better" if delta > _SAME_EPS else "worse" if delta < -_SAME_EPS else "same"] += 1

    def to_row(self) -> dict[str, float]:
        """The figures as one row of scalars (min/max of no scores are NaN)."""
        row = dict(self.v)
        if not self.v["scored_pairs"]:
            row["score_min"] = row["score_max"] = math.nan
        return row

    def merge_row(self, row: dict) -> None:
        """Add another worker's `to_row()` (None counts as 0: a unit without scores)."""
        for name, _ in partial_columns():
            value = row.get(name)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            if name == "score_min":
                self.v[name] = min(self.v[name], value)
            elif name == "score_max":
                self.v[name] = max(self.v[name], value)
            else:
                self.v[name] += value

    def quantile(self, q: float) -> float:
        """The q-quantile of every score, from the histogram: linear inside its bin, so within one bin
        width (QUANTILE_PRECISION) of the exact value, and clamped to the exact min and max."""
        counts = [self.v[f"score_bin_{i:02d}"] for i in range(SCORE_BINS)]
        total = sum(counts)
        target, seen = q * total, 0
        for i, c in enumerate(counts):
            if c and seen + c >= target:
                value = (i + (target - seen) / c) / SCORE_BINS
                return float(min(max(value, self.v["score_min"]), self.v["score_max"]))
            seen += c
        return float(self.v["score_max"])

    def _means(self, prefix: str, queries: int) -> dict:
        n = max(queries, 1)
        return {"queries": int(queries),
                **{side: {m: self.v[f"{prefix}{side}_{m.replace('@', '_at_')}"] / n for m in METRIC_NAMES}
                   for side in ("before", "after")}}

    def summary(self) -> dict:
        v = self.v
        out: dict = {"queries": int(v["queries"]), "scored_pairs": int(v["scored_pairs"])}
        if v["scored_pairs"]:
            out["score_distribution"] = {
                "min": float(v["score_min"]), "p50": self.quantile(0.5), "p90": self.quantile(0.9),
                "max": float(v["score_max"]), "mean": v["score_sum"] / v["scored_pairs"],
                "quantile_precision": QUANTILE_PRECISION}
        out["rank_change"] = {
            "mean_abs_delta_rank": v["abs_rank_change_sum"] / v["rank_change_rows"] if v["rank_change_rows"] else None,
            "top1_changed_share": v["top1_changed"] / v["top1_comparable"] if v["top1_comparable"] else None}
        if v["labelled_queries"]:
            out["labelled"] = {
                "overall": self._means("", v["labelled_queries"]),
                "by_candidate_count": {name: self._means(_bucket_key(name) + "_", v[f"{_bucket_key(name)}_queries"])
                                       for name, _, _ in BUCKETS if v[f"{_bucket_key(name)}_queries"]},
                "ndcg@10_change": {"better": int(v["better"]), "worse": int(v["worse"]), "same": int(v["same"])}}
        return out
