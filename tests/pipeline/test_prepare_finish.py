"""The last prepare step over one whole partition: rules, missing texts, no-candidate queries, parts of
at most P pairs and dead letters written under content names, acknowledgements only returned."""

from __future__ import annotations

import pyarrow as pa

from qbatch.connectors.rerank_staging import RerankStaging
from qbatch.pipeline.prepare_finish import finish_partition
from qbatch.pipeline.query_redaction import QueryRedactor
from qbatch.pipeline.rerank_acks import ACK_SCHEMA
from qbatch.pipeline.rerank_rows import PREPARED_SCHEMA, reject_row, rows_table, stats_row


def cand(q, doc, line, text="t", item=0):
    return {"kind": "candidate", "query_id": q, "query": f"secret {q}", "doc_id": doc, "source": "log",
            "file_idx": 0, "line": line, "item": item, "text": text, "text_rank": 1 if text else None}


def test_one_partition_becomes_parts_dead_letters_and_acks(tmp_path):
    staging = RerankStaging(str(tmp_path), "r1")
    redactor = QueryRedactor(b"k" * 16)
    block = rows_table([cand("1", "a", 1), cand("1", "b", 2), cand("1", "a", 3), cand("2", "c", 4),
                        cand("2", "gone", 5, text=None), cand("3", None, 6, text=None), cand("4", "d", 7),
                        reject_row("broken_json", "read", "unreadable", file_idx=0, line=8),
                        stats_row({"log_rows": 8, "candidates_read": 8})])
    acks = finish_partition(block, staging=staging, max_per_query=5, pairs_per_part=3, redactor=redactor,
                            file_uris=["log.jsonl"], retrieval=False, missing_where="documents.corpus")
    assert acks.schema == ACK_SCHEMA
    rows = acks.to_pylist()
    prepared = [r for r in rows if r["part_kind"] == "prepared"]
    assert sorted(r["rows"] for r in prepared) == [1, 3]  # query 1 (a, b) + 2 (c) fill a part; query 4 the next
    parts = [staging.read_table(r["part"], PREPARED_SCHEMA) for r in prepared]
    assert sorted(tuple(p.column("doc_id").to_pylist()) for p in parts) == [("a", "b", "c"), ("d",)]
    dead = [r for r in rows if r["part_kind"] == "dead_letter"]
    assert sorted((r["reason"], r["rows"]) for r in dead) == [
        ("broken_json", 1), ("duplicate_candidate", 1), ("missing_document", 1), ("no_candidates", 1)]
    letters = staging.read_table(dead[0]["part"]).to_pylist()
    assert {r["file"] for r in letters} == {"log.jsonl"} and {r["run_id"] for r in letters} == {"r1"}
    assert not any("secret" in (r["original_row"] or "") for r in letters)  # queries redacted
    counts = next(r for r in rows if r["part_kind"] is None)
    assert (counts["queries"], counts["log_rows"], counts["candidates_read"]) == (4, 8, 8)
    again = finish_partition(block, staging=staging, max_per_query=5, pairs_per_part=3, redactor=redactor,
                             file_uris=["log.jsonl"], retrieval=False, missing_where="documents.corpus")
    assert sorted(r["part"] or "" for r in again.to_pylist()) == sorted(r["part"] or "" for r in rows)  # a retry
