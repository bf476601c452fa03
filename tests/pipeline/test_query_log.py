"""Query-log parsing and grouping: long and nested shapes, bad rows as rejects, keep-first dedupe."""

from __future__ import annotations

import json

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from qbatch.connectors.corpus_file_reader import RAW_SCHEMA
from qbatch.pipeline.query_log import LogColumns, group_candidates, groups_to_table, parse_log_records
from qbatch.pipeline.query_redaction import QueryRedactor

PLAIN = QueryRedactor(None)


def raw(lines: list[object]) -> pa.Table:
    rows = []
    for i, line in enumerate(lines, 1):
        if isinstance(line, dict):
            rows.append({"_file": "log.jsonl", "_line": i, "_record": json.dumps(line), "_raw": None, "_read_error": None})
        else:
            rows.append({"_file": "log.jsonl", "_line": i, "_record": None, "_raw": line, "_read_error": "broken_json"})
    return pa.Table.from_pylist(rows, schema=RAW_SCHEMA)


def test_long_shape_groups_in_order_and_rejects_bad_rows():
    lines = [
        {"query_id": 1, "query": "sort a list", "doc_id": "a", "rank": 1, "score": 0.9, "label": 2},
        {"query_id": "1", "query": "sort a list", "doc_id": "b", "rank": 2},
        '{"query_id": "2", "query": "broken',
        {"query_id": "2", "query": "  ", "doc_id": "c"},
        {"query_id": "1", "query": "sort a list", "doc_id": "a", "rank": 3},  # duplicate of line 1
        {"query_id": "3", "query": "no candidates here"},
        {"query_id": "4", "query": "bad rank", "doc_id": "d", "rank": "first"},
        {"query": "no id", "doc_id": "e"},
        {"query_id": "5", "query": "lone \ud800 surrogate", "doc_id": "f"},
    ]
    rows, rejects, read = parse_log_records(raw(lines), LogColumns(), "long", 0, PLAIN)
    assert read == len(lines)
    assert all(r["original_row"].encode("utf-8") for r in rejects)  # writable to Parquet as is
    assert sorted(((r["reason"], r["line"]) for r in rejects), key=lambda r: r[1]) == [
        ("broken_json", 3), ("empty_query", 4), ("invalid_field", 7), ("missing_query_id", 8),
        ("bad_utf8", 9)]
    groups, dupes = group_candidates(rows, max_per_query=10, redactor=PLAIN)
    assert [g.query_id for g in groups] == ["1", "3"]
    assert [(c.doc_id, c.orig_rank, c.label) for c in groups[0].candidates] == [("a", 1, 2.0), ("b", 2, None)]
    assert groups[1].candidates == []
    assert [(d["reason"], d["doc_id"], d["line"]) for d in dupes] == [("duplicate_candidate", "a", 5)]


def test_nested_shape_explodes_candidates():
    lines = [
        {"qid": "q1", "text": "open a file", "cands": [{"doc_id": "a", "rank": 2}, {"doc_id": "b", "rank": 1}, 7]},
        {"qid": "q2", "text": "retrieve me", "cands": []},
        {"qid": "q3", "text": "also retrieve me"},
    ]
    cols = LogColumns(query_id="qid", query="text", candidates="cands")
    rows, rejects, read = parse_log_records(raw(lines), cols, "nested", 100, PLAIN)
    assert read == 5  # three candidates + two queries without any
    assert [r["reason"] for r in rejects] == ["invalid_candidate"]
    assert rows.column("seq").to_pylist() == [100, 101, 102, 103]
    groups, _ = group_candidates(rows, max_per_query=1, redactor=PLAIN)
    assert [(g.query_id, [c.doc_id for c in g.candidates]) for g in groups] == [("q1", ["a"]), ("q2", []), ("q3", [])]
    table = groups_to_table(groups)
    assert table.column("doc_ids").to_pylist() == [["a"], [], []]


def test_redacted_rejects_carry_no_query_text():
    redactor = QueryRedactor(b"k" * 16)
    lines = [{"query_id": "1", "query": "secret words", "doc_id": "a", "rank": "x"}, '{"query": "secret words"']
    _, rejects, _ = parse_log_records(raw(lines), LogColumns(), "long", 0, redactor)
    assert len(rejects) == 2
    assert all("secret words" not in r["original_row"] for r in rejects)
    assert redactor.redact("secret words") in rejects[0]["original_row"]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 8)), min_size=1, max_size=60), st.integers(1, 6))
def test_grouping_keeps_first_of_each_pair_and_caps(pairs, cap):
    lines = [{"query_id": f"q{q}", "query": f"query {q}", "doc_id": f"d{d}", "rank": i + 1} for i, (q, d) in enumerate(pairs)]
    rows, _, _ = parse_log_records(raw(lines), LogColumns(), "long", 0, PLAIN)
    groups, rejects = group_candidates(rows, max_per_query=cap, redactor=PLAIN)
    kept = sum(len(g.candidates) for g in groups)
    assert kept + len(rejects) == len(pairs)
    for g in groups:
        ids = [c.doc_id for c in g.candidates]
        assert len(ids) == len(set(ids)) <= cap
        first_seen = list(dict.fromkeys(f"d{d}" for q, d in pairs if f"q{q}" == g.query_id))
        assert ids == first_seen[:cap]
