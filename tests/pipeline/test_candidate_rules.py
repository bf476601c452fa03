"""The per-query rules follow the order key, never the order rows arrive in: a query's text, keep-first
duplicates, the max_per_query cap, the corpus's first record, and queries without candidates."""

from __future__ import annotations

import random

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from qbatch.pipeline.candidate_rules import apply_rules, query_order
from qbatch.pipeline.query_redaction import QueryRedactor
from qbatch.pipeline.rerank_rows import CANDIDATE, rows_table

PLAIN = QueryRedactor(None)


def candidate(q: str, doc: str | None, file_idx: int, line: int, item: int = 0, query: str | None = None,
              **extra) -> dict:
    return {"kind": CANDIDATE, "query_id": q, "query": query or f"query {q}", "doc_id": doc, "source": "log",
            "file_idx": file_idx, "line": line, "item": item, **extra}


def test_rules_by_order_key_whatever_the_arrival_order():
    rows = [candidate("1", "a", 1, 5, query="later text"), candidate("1", "a", 0, 9, query="first text"),
            candidate("1", "b", 0, 10), candidate("1", "c", 0, 11), candidate("2", None, 0, 3),
            candidate("3", "z", 0, 1, text="second record", text_rank=20),
            candidate("3", "z", 0, 1, text="first record", text_rank=7)]
    for seed in range(5):
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        kept, rejects = apply_rules(rows_table(shuffled), max_per_query=2, redactor=PLAIN, retrieval=True)
        got = sorted(zip(kept.column("query_id").to_pylist(), kept.column("doc_id").to_pylist(),
                         kept.column("query").to_pylist(), kept.column("text").to_pylist(),
                         kept.column("needs_retrieval").to_pylist()), key=str)
        assert got == sorted([("1", "a", "first text", None, None), ("1", "b", "first text", None, None),
                              ("2", None, "query 2", None, True), ("3", "z", "query 3", "first record", None)], key=str)
        assert sorted(zip(rejects.column("reason").to_pylist(), rejects.column("line").to_pylist())) == [
            ("duplicate_candidate", 5), ("too_many_candidates", 11)]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 6)), min_size=1, max_size=50), st.integers(1, 5),
       st.randoms())
def test_keeps_the_first_of_each_pair_and_caps_in_order(pairs, cap, rnd):
    rows = [candidate(f"q{q}", f"d{d}", 0, i + 1) for i, (q, d) in enumerate(pairs)]
    rnd.shuffle(rows)
    kept, rejects = apply_rules(rows_table(rows), max_per_query=cap, redactor=PLAIN, retrieval=False)
    assert kept.num_rows + rejects.num_rows == len(pairs)
    ordered = query_order(kept.to_pandas())
    for q, group in ordered.groupby("query_id", sort=False):
        first_seen = list(dict.fromkeys(f"d{d}" for qq, d in pairs if f"q{qq}" == q))
        assert list(group["doc_id"]) == first_seen[:cap]
    firsts = [r for r in dict.fromkeys(f"q{q}" for q, _ in pairs)]
    assert list(dict.fromkeys(ordered["query_id"])) == firsts  # whole queries, in order of their first rows


def test_a_rerun_changes_nothing():
    rows = rows_table([candidate("1", "a", 0, 1), candidate("1", "a", 0, 2), candidate("2", None, 0, 3)])
    kept, _ = apply_rules(rows, max_per_query=5, redactor=PLAIN, retrieval=False)
    again, rejects = apply_rules(kept, max_per_query=5, redactor=PLAIN, retrieval=False)
    assert again.to_pylist() == kept.to_pylist() and rejects.num_rows == 0
    assert isinstance(again, pa.Table)
