"""Whole queries packed into parts of at most P pairs, a bigger query alone, names from content."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from qbatch.pipeline.part_packing import pack_queries, part_name


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=1, max_size=40), st.integers(1, 10))
def test_parts_hold_whole_queries_in_order_and_at_most_p_pairs(sizes, p):
    ids = [f"q{i}" for i, n in enumerate(sizes) for _ in range(n)]
    parts = list(pack_queries(pa.table({"query_id": ids}), p))
    assert [q for _, t in parts for q in t.column("query_id").to_pylist()] == ids
    for name, table in parts:
        queries = list(dict.fromkeys(table.column("query_id").to_pylist()))
        assert name == part_name(queries[0])
        assert table.num_rows <= p or len(queries) == 1  # a bigger query gets a part of its own
    starts = [dict.fromkeys(t.column("query_id").to_pylist()) for _, t in parts]
    assert sum(len(s) for s in starts) == len(sizes)  # no query is cut between parts
    assert len({n for n, _ in parts}) == len(parts)
