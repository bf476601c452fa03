from __future__ import annotations

import pytest

from qbatch.common.errors import ConfigError
from qbatch.pipeline.validation_gates import count_parity, golden_gate, golden_recall, load_golden_queries, minimum_size


def test_count_parity_passes_only_on_exact_match():
    ok = count_parity(points_in_collection=120, points_upserted=120, expected_points=120)
    assert ok.passed and ok.name == "count_parity" and ok.figures["expected_points"] == 120
    short = count_parity(points_in_collection=100, points_upserted=100, expected_points=120)
    assert not short.passed
    assert "20 fewer" in short.message and "upserted only 100" in short.message
    extra = count_parity(points_in_collection=125, points_upserted=120, expected_points=120)
    assert not extra.passed and "5 more" in extra.message and "upserted only" not in extra.message


def test_minimum_size():
    assert minimum_size(new_docs=80, live_docs=100, min_ratio=0.8).passed
    low = minimum_size(new_docs=79, live_docs=100, min_ratio=0.8)
    assert not low.passed and low.figures["ratio"] == pytest.approx(0.79) and "79.0%" in low.message
    assert minimum_size(new_docs=0, live_docs=0, min_ratio=0.9).passed
    assert minimum_size(new_docs=0, live_docs=None, min_ratio=0.9).passed


def test_golden_recall_hand_checked():
    expected = {"q1": ["a", "b"], "q2": ["c"], "q3": ["d", "e", "f", "g"]}
    results = {
        "q1": ["a", "a", "x", "b"],  # distinct top-2 = {a, x}: 1/2 (the repeated chunk of a is not a slot)
        "q2": ["y", "c"],  # top-2 holds c: 1/1
        # q3 missing: 0/4
    }
    assert golden_recall(results, expected, k=2) == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert golden_recall(results, expected, k=3) == pytest.approx((1.0 + 1.0 + 0.0) / 3)
    assert golden_recall({"q1": ["b"]}, {"q1": ["a", "b"]}, k=1) == 0.5
    with pytest.raises(ValueError):
        golden_recall(results, {}, k=2)
    with pytest.raises(ValueError):
        golden_recall(results, expected, k=0)


def test_golden_gate():
    assert golden_gate(0.9, None, threshold=0.8, max_drop=0.05).passed
    below = golden_gate(0.7, None, threshold=0.8, max_drop=0.05)
    assert not below.passed and "below the threshold 0.800" in below.message
    # A drop of exactly max_drop passes despite float rounding (0.8 - 0.7 = 0.10000000000000009).
    assert golden_gate(0.7, 0.8, threshold=0.5, max_drop=0.1).passed
    dropped = golden_gate(0.69, 0.8, threshold=0.5, max_drop=0.1)
    assert not dropped.passed and "fell from 0.800" in dropped.message
    both = golden_gate(0.4, 0.9, threshold=0.5, max_drop=0.1)
    assert not both.passed and "threshold" in both.message and "fell" in both.message
    assert both.figures == {"new_recall": 0.4, "live_recall": 0.9, "threshold": 0.5, "max_drop": 0.1}


def test_load_golden_queries():
    lines = ['{"query": "red shoes", "expected_doc_ids": ["p1", "p2", "p1"]}', "",
             '{"query": "blue hat", "expected_doc_ids": ["p9"]}']
    assert load_golden_queries(lines) == {"red shoes": ["p1", "p2"], "blue hat": ["p9"]}


@pytest.mark.parametrize(("line", "fragment"), [
    ("{nope", "not valid JSON"),
    ('["a"]', "expected an object"),
    ('{"query": "", "expected_doc_ids": ["a"]}', "'query' must be a non-empty string"),
    ('{"query": "q", "expected_doc_ids": []}', "non-empty list"),
    ('{"query": "q", "expected_doc_ids": "a"}', "non-empty list"),
    ('{"query": "q", "expected_doc_ids": ["a"], "k": 3}', "unknown field(s) k"),
    ('{"query": "ok", "expected_doc_ids": ["a"]}', "repeats an earlier line"),
])
def test_bad_golden_rows_name_the_line(line, fragment):
    lines = ['{"query": "ok", "expected_doc_ids": ["a"]}', "", line]
    with pytest.raises(ConfigError) as err:
        load_golden_queries(lines, source="golden.jsonl")
    assert "golden.jsonl line 3" in str(err.value) and fragment in str(err.value)


def test_empty_golden_file_is_refused():
    with pytest.raises(ConfigError, match="no golden queries"):
        load_golden_queries(["", "  "], source="golden.jsonl")
