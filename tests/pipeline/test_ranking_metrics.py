"""Ranking metrics against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest

from qbatch.pipeline.ranking_metrics import (RunMetrics, bucket_of, dcg_at_k, labels_in_order, mrr_at_k, ndcg_at_k,
                                      recall_at_k)

L2 = math.log2


def test_binary_ndcg_by_hand():
    # relevant at positions 2 and 3: DCG = 1/log2(3) + 1/log2(4); ideal = 1/log2(2) + 1/log2(3)
    expected = (1 / L2(3) + 1 / L2(4)) / (1 + 1 / L2(3))
    assert ndcg_at_k([0, 1, 1, 0], 10) == pytest.approx(expected)
    assert ndcg_at_k([0, 1, 1, 0], 10) == pytest.approx(0.6934, abs=1e-4)


def test_graded_ndcg_uses_gain_2_pow_rel_minus_1():
    # labels in rank order [1, 3, 0, 2]: gains 1, 7, 0, 3
    dcg = 1 / L2(2) + 7 / L2(3) + 0 + 3 / L2(5)
    ideal = 7 / L2(2) + 3 / L2(3) + 1 / L2(4)
    assert dcg_at_k([1, 3, 0, 2], 10) == pytest.approx(dcg)
    assert ndcg_at_k([1, 3, 0, 2], 10) == pytest.approx(dcg / ideal)
    assert ndcg_at_k([1, 3, 0, 2], 10) == pytest.approx(0.7142, abs=1e-4)


def test_ndcg_cutoff_and_degenerate_cases():
    assert ndcg_at_k([0] * 10 + [1], 10) == 0.0  # the only relevant doc is at 11
    assert ndcg_at_k([0, 0, 0], 10) == 0.0
    assert ndcg_at_k([2, 1, 0], 10) == pytest.approx(1.0)
    assert ndcg_at_k([], 10) == 0.0


def test_mrr_and_recall_by_hand():
    assert mrr_at_k([0, 0, 1, 1], 10) == pytest.approx(1 / 3)
    assert mrr_at_k([0] * 10 + [1], 10) == 0.0
    assert mrr_at_k([2], 10) == 1.0
    labels = [0] * 9 + [1] + [1, 1]  # 3 relevant, one within the top 10
    assert recall_at_k(labels, 10) == pytest.approx(1 / 3)
    assert recall_at_k([0, 0], 10) == 0.0


def test_labels_in_order_puts_null_ranks_last_then_doc_id():
    assert labels_in_order([None, 2, 1, None], [1, 2, 3, 4], ["d", "c", "b", "a"]) == [3.0, 2.0, 4.0, 1.0]


def test_run_metrics_before_after_and_buckets():
    m = RunMetrics()
    # query 1: relevant doc moves from rank 3 to rank 1 -> better
    m.add_query([1, 2, 3], [2, 3, 1], [0, 0, 1], [0.2, 0.1, 0.9], ["a", "b", "c"])
    # query 2: relevant doc moves from rank 1 to rank 2 -> worse; 12 candidates -> bucket 11-50
    orig = list(range(1, 13))
    new = [2, 1] + orig[2:]
    m.add_query(orig, new, [1] + [0] * 11, [0.5] * 12, [f"d{i:02d}" for i in range(12)])
    # query 3: no labels -> counts for scores/rank change only
    m.add_query([1, 2], [1, 2], [None, None], [0.3, 0.2], ["x", "y"])
    s = m.summary()
    assert s["queries"] == 3 and s["scored_pairs"] == 17
    lab = s["labelled"]
    assert lab["overall"]["queries"] == 2
    assert lab["overall"]["before"]["mrr@10"] == pytest.approx((1 / 3 + 1) / 2)
    assert lab["overall"]["after"]["mrr@10"] == pytest.approx((1 + 1 / 2) / 2)
    assert lab["ndcg@10_change"] == {"better": 1, "worse": 1, "same": 0}
    assert lab["by_candidate_count"]["1-10"]["queries"] == 1 and lab["by_candidate_count"]["11-50"]["queries"] == 1
    assert s["rank_change"]["top1_changed_share"] == pytest.approx(2 / 3)
    assert s["rank_change"]["mean_abs_delta_rank"] == pytest.approx((1 + 1 + 2 + 1 + 1) / 17)
    assert s["score_distribution"]["max"] == pytest.approx(0.9)


def test_buckets():
    assert [bucket_of(n) for n in (1, 10, 11, 50, 51, 500)] == ["1-10", "1-10", "11-50", "11-50", "51+", "51+"]


def test_merged_partials_equal_one_run_and_quantiles_are_within_one_bin():
    import numpy as np

    rng = np.random.default_rng(3)
    whole, parts = RunMetrics(), [RunMetrics(), RunMetrics(), RunMetrics()]
    all_scores = []
    for q in range(60):
        n = int(rng.integers(1, 30))
        scores = rng.beta(2, 5, n).astype(np.float32)
        orig = list(range(1, n + 1))
        new = [int(r) + 1 for r in np.argsort(np.argsort(-scores))]
        labels = [float(rng.integers(0, 3)) if q % 3 else None for _ in range(n)]
        ids = [f"d{i}" for i in range(n)]
        whole.add_query(orig, new, labels, scores.tolist(), ids)
        parts[q % 3].add_query(orig, new, labels, scores.tolist(), ids)
        all_scores += scores.tolist()
    merged = RunMetrics()
    for p in parts:
        merged.merge_row(p.to_row())
    merged.merge_row(RunMetrics().to_row())  # a unit without scores adds nothing
    a, b = whole.summary(), merged.summary()
    import json

    rounded = lambda d: json.loads(json.dumps(d), parse_float=lambda x: round(float(x), 9))  # noqa: E731
    assert rounded(a["labelled"]) == rounded(b["labelled"]) and a["rank_change"] == pytest.approx(b["rank_change"])
    dist = b["score_distribution"]
    assert dist["min"] == pytest.approx(min(all_scores)) and dist["max"] == pytest.approx(max(all_scores))
    assert dist["mean"] == pytest.approx(float(np.mean(all_scores)), rel=1e-6)
    for q, key in ((0.5, "p50"), (0.9, "p90")):
        assert abs(dist[key] - float(np.quantile(all_scores, q))) <= dist["quantile_precision"]
    assert all(isinstance(v, (int, float)) for v in merged.to_row().values())  # scalars only, never a list
