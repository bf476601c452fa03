from __future__ import annotations

from qbatch.pipeline.qwen3_templates import (DEFAULT_TASK, format_query, format_rerank_head, format_rerank_middle)


def test_query_has_one_newline_and_no_space_after_query():
    assert format_query("cats") == f"Instruct: {DEFAULT_TASK}\nQuery:cats"
    assert format_query(" cats", "Find products") == "Instruct: Find products\nQuery: cats"


def test_rerank_head_stops_before_the_documents_space():
    head = format_rerank_head("q", "task")
    assert head == "<Instruct>: task\n<Query>: q\n<Document>:"
    assert format_rerank_middle("q", "doc", "task") == head + " doc"
    assert format_rerank_middle("q", "d") == f"<Instruct>: {DEFAULT_TASK}\n<Query>: q\n<Document>: d"
