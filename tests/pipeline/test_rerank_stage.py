from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from qbatch.pipeline.rerank_stage import instruction_sha, new_ranks


def test_ties_break_by_orig_rank_nulls_last_then_doc_id():
    scores = [0.5, 0.5, 0.5, 0.5, 0.9, 0.1]
    valid = [True, True, True, True, True, False]
    ranks = new_ranks(scores, valid, [None, 3, 2, None, 9, 1], ["b", "x", "y", "a", "z", "w"])
    assert ranks == [5, 3, 2, 4, 1, None]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.1, 0.5, 0.9]), st.booleans(), st.one_of(st.none(), st.integers(1, 5))),
                max_size=30))
def test_new_ranks_are_a_permutation_of_the_valid_rows(rows):
    scores, valid, orig = zip(*rows) if rows else ((), (), ())
    ranks = new_ranks(list(scores), list(valid), list(orig), [f"d{i}" for i in range(len(rows))])
    assert sorted(r for r in ranks if r is not None) == list(range(1, sum(valid) + 1))
    assert all((r is None) == (not v) for r, v in zip(ranks, valid))
    by_rank = sorted((r, s) for r, s in zip(ranks, scores) if r is not None)
    assert [s for _, s in by_rank] == sorted((s for s, v in zip(scores, valid) if v), reverse=True)


def test_instruction_sha_names_the_default_task():
    assert instruction_sha(None) == instruction_sha("Given a web search query, retrieve relevant passages that answer the query")
    assert instruction_sha("x") != instruction_sha(None)
