from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qbatch.pipeline.batch_planner import (execution_order, inverse_permutation, plan_packs, plan_padded_batches,
                                    restore_order)

lengths_st = st.lists(st.integers(min_value=1, max_value=300), min_size=0, max_size=200)
budget_st = st.integers(min_value=1, max_value=4096)


@settings(deadline=None, max_examples=200)
@given(lengths=lengths_st, budget=budget_st)
def test_padded_plan_covers_every_index_once_within_budget(lengths, budget):
    batches = plan_padded_batches(lengths, budget)
    seen = execution_order(batches)
    assert sorted(seen.tolist()) == list(range(len(lengths)))
    for b in batches:
        assert b.rows >= 1
        assert b.padded_tokens <= budget or b.rows == 1
        assert b.real_tokens >= 0.98 * b.padded_tokens or b.rows == 1
        assert b.padded_len == max(lengths[i] for i in b.indices)


@settings(deadline=None, max_examples=200)
@given(lengths=lengths_st, budget=budget_st, overhead=st.integers(min_value=0, max_value=200))
def test_row_overhead_plans_stay_within_budget_and_floor(lengths, budget, overhead):
    batches = plan_padded_batches(lengths, budget, row_overhead=overhead)
    assert sorted(execution_order(batches).tolist()) == list(range(len(lengths)))
    for b in batches:
        assert b.rows * (b.padded_len + overhead) <= budget or b.rows == 1
        assert b.real_tokens + overhead * b.rows >= 0.98 * (b.padded_len + overhead) * b.rows or b.rows == 1


@settings(deadline=None, max_examples=200)
@given(lengths=lengths_st, budget=budget_st, cost=st.integers(min_value=0, max_value=500))
def test_pass_cost_allows_padding_up_to_one_pass_and_no_more(lengths, budget, cost):
    batches = plan_padded_batches(lengths, budget, pass_cost_tokens=cost)
    assert sorted(execution_order(batches).tolist()) == list(range(len(lengths)))
    for b in batches:
        assert b.padded_tokens <= budget or b.rows == 1
        assert b.padded_tokens - b.real_tokens <= max(0.02 * b.padded_tokens, cost)


def test_short_texts_of_many_lengths_share_passes_within_the_pass_cost():
    lengths = list(range(10, 42)) * 8  # 256 catalog-like texts, 32 distinct lengths
    strict = plan_padded_batches(lengths, 8192)
    assert len(strict) >= 20  # the 2% floor alone: about one pass per one or two distinct lengths
    shared = plan_padded_batches(lengths, 8192, pass_cost_tokens=256)
    assert len(shared) <= len(strict) // 4
    assert all(b.padded_tokens - b.real_tokens <= max(0.02 * b.padded_tokens, 256) for b in shared)


@settings(deadline=None, max_examples=200)
@given(lengths=lengths_st, budget=budget_st)
def test_packs_cover_every_index_once_within_budget(lengths, budget):
    packs = plan_packs(lengths, budget)
    assert sorted(execution_order(packs).tolist()) == list(range(len(lengths)))
    for p in packs:
        assert p.real_tokens <= budget or p.rows == 1


@settings(deadline=None, max_examples=200)
@given(lengths=lengths_st.filter(bool), budget=budget_st)
def test_restore_order_returns_rows_in_input_order(lengths, budget):
    batches = plan_padded_batches(lengths, budget)
    # Each batch "computes" its rows' input positions; restoring must give 0..n-1 back.
    outputs = [np.stack([b.indices, b.lengths], axis=1) for b in batches]
    restored = restore_order(batches, outputs)
    assert restored[:, 0].tolist() == list(range(len(lengths)))
    assert restored[:, 1].tolist() == list(lengths)


@given(perm=st.permutations(list(range(30))))
def test_inverse_permutation_round_trip(perm):
    order = np.asarray(perm)
    inverse = inverse_permutation(order)
    assert (order[inverse] == np.arange(30)).all()
    assert (inverse[order] == np.arange(30)).all()


def test_sorting_keeps_batches_dense():
    lengths = [5, 50, 6, 49, 5, 48]
    batches = plan_padded_batches(lengths, 100)
    assert [sorted(b.indices.tolist()) for b in batches] == [[1, 3], [5], [2], [0, 4]]
    # Without the efficiency floor only the budget cuts: 48 and 6 share a batch.
    loose = plan_padded_batches(lengths, 100, min_efficiency=0.0)
    assert [sorted(b.indices.tolist()) for b in loose] == [[1, 3], [2, 5], [0, 4]]
    # Ties keep input order, so the same input always gives the same plan.
    assert plan_padded_batches([3, 3, 3], 6)[0].indices.tolist() == [0, 1]


def test_row_overhead_counts_against_the_budget():
    batches = plan_padded_batches([10] * 6, 100, row_overhead=40)
    assert [b.rows for b in batches] == [2, 2, 2]
    assert all(b.padded_tokens == 20 for b in batches)
    # The overhead is real work, so tails of 10 and 8 after a 90-token prefix share a batch...
    assert [b.rows for b in plan_padded_batches([10, 8], 1000, row_overhead=90)] == [2]
    # ...which they would not on their own (8/10 < 0.98).
    assert [b.rows for b in plan_padded_batches([10, 8], 1000)] == [1, 1]


def test_over_budget_sequence_runs_alone_and_halves_split():
    batches = plan_padded_batches([500, 10, 10], 100)
    assert batches[0].indices.tolist() == [0] and batches[0].padded_tokens == 500
    first, second = batches[1].halves()
    assert first.rows + second.rows == batches[1].rows
    with pytest.raises(ValueError, match="single-row"):
        batches[0].halves()


def test_rejects_empty_sequences_and_bad_budgets():
    with pytest.raises(ValueError, match="index 1"):
        plan_padded_batches([3, 0], 10)
    with pytest.raises(ValueError, match="max_batch_tokens"):
        plan_packs([3], 0)
