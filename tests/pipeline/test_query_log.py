"""Query-log parsing: long and nested shapes, bad rows as rejects with reasons, the order key."""

from __future__ import annotations

import json

import pyarrow as pa

from qbatch.connectors.corpus_file_reader import RAW_SCHEMA
from qbatch.pipeline.query_log import LogColumns, parse_log_records, parse_stage
from qbatch.pipeline.query_redaction import QueryRedactor
from qbatch.pipeline.rerank_rows import PREP_SCHEMA, sum_stats

PLAIN = QueryRedactor(None)


def raw(lines: list[object], file: str = "log.jsonl") -> pa.Table:
    rows = []
    for i, line in enumerate(lines, 1):
        if isinstance(line, dict):
            rows.append({"_file": file, "_line": i, "_record": json.dumps(line), "_raw": None, "_read_error": None})
        else:
            rows.append({"_file": file, "_line": i, "_record": None, "_raw": line, "_read_error": "broken_json"})
    return pa.Table.from_pylist(rows, schema=RAW_SCHEMA)


def test_long_shape_parses_in_order_and_rejects_bad_rows():
    lines = [
        {"query_id": 1, "query": "sort a list", "doc_id": "a", "rank": 1, "score": 0.9, "label": 2},
        {"query_id": "1", "query": "sort a list", "doc_id": "b", "rank": 2},
        '{"query_id": "2", "query": "broken',
        {"query_id": "2", "query": "  ", "doc_id": "c"},
        {"query_id": "3", "query": "no candidates here"},
        {"query_id": "4", "query": "bad rank", "doc_id": "d", "rank": "first"},
        {"query": "no id", "doc_id": "e"},
        {"query_id": "5", "query": "lone \ud800 surrogate", "doc_id": "f"},
    ]
    rows, rejects, read = parse_log_records(raw(lines), LogColumns(), "long", PLAIN)
    assert read == len(lines)
    assert all(r["original_row"].encode("utf-8") for r in rejects)  # writable to Parquet as is
    assert sorted(((r["reason"], r["line"]) for r in rejects), key=lambda r: r[1]) == [
        ("broken_json", 3), ("empty_query", 4), ("invalid_field", 6), ("missing_query_id", 7), ("bad_utf8", 8)]
    assert rows.column("query_id").to_pylist() == ["1", "1", "3"]
    assert rows.column("doc_id").to_pylist() == ["a", "b", None]
    assert rows.column("line").to_pylist() == [1, 2, 5] and rows.column("item").to_pylist() == [0, 0, 0]


def test_nested_shape_explodes_candidates_with_their_item_index():
    lines = [
        {"qid": "q1", "text": "open a file", "cands": [{"doc_id": "a", "rank": 2}, {"doc_id": "b", "rank": 1}, 7]},
        {"qid": "q2", "text": "retrieve me", "cands": []},
        {"qid": "q3", "text": "also retrieve me"},
    ]
    cols = LogColumns(query_id="qid", query="text", candidates="cands")
    rows, rejects, read = parse_log_records(raw(lines), cols, "nested", PLAIN)
    assert read == 5  # three candidates + two queries without any
    assert [(r["reason"], r["item"]) for r in rejects] == [("invalid_candidate", 2)]
    assert list(zip(rows.column("doc_id").to_pylist(), rows.column("item").to_pylist())) == [
        ("a", 0), ("b", 1), (None, 0), (None, 0)]


def test_redacted_rejects_carry_no_query_text():
    redactor = QueryRedactor(b"k" * 16)
    lines = [{"query_id": "1", "query": "secret words", "doc_id": "a", "rank": "x"}, '{"query": "secret words"']
    _, rejects, _ = parse_log_records(raw(lines), LogColumns(), "long", redactor)
    assert len(rejects) == 2
    assert all("secret words" not in r["original_row"] for r in rejects)
    assert redactor.redact("secret words") in rejects[0]["original_row"]


def test_the_stage_hands_on_candidates_rejects_and_its_counts_with_the_file_index():
    block = pa.concat_tables([raw([{"query_id": "1", "query": "q", "doc_id": "a"}, "{bad"], file="b.jsonl"),
                              pa.Table.from_pylist([{"_file": "b.jsonl", "_line": 2, "_record": "{}", "_raw": None,
                                                     "_read_error": "__end_of_file__"}], schema=RAW_SCHEMA)])
    out = parse_stage(block, LogColumns(), "long", {"a.jsonl": 0, "b.jsonl": 1}, PLAIN)
    assert out.schema == PREP_SCHEMA
    assert out.column("kind").to_pylist() == ["candidate", "reject", "stats"]
    assert out.column("file_idx").to_pylist()[:2] == [1, 1] and out.column("source").to_pylist()[0] == "log"
    assert sum_stats(out.column("stats").to_pylist()) == {"log_rows": 2, "candidates_read": 2}  # the marker is no row
