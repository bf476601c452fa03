"""Shared-prefix KV reuse must reproduce the official, unshared scores exactly (QWEN3.md)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qbatch.pipeline import Reranker
from qbatch.pipeline.reranker_prefix_sharing import plan_shared
from tests.pipeline import qwen3_reference as ref
from tests.pipeline.text_samples import TEXTS

MAX_LEN = 160
FP32 = {"device": "cpu", "dtype": "float32"}  # parity bounds hold at fp32; bf16 has its own tests


@pytest.fixture(scope="module")
def reranker(tiny_reranker_checkpoint):
    return Reranker.from_pretrained(tiny_reranker_checkpoint, **FP32, max_length=MAX_LEN, max_batch_tokens=400)


def test_candidates_match_the_reference_and_reuse_the_prefix(reranker, reranker_reference):
    query = "what is machine learning"
    reranker.reset_counters()
    scores, valid = reranker.score_candidates(query, TEXTS)
    want = ref.rerank(*reranker_reference, [(query, d) for d in TEXTS], MAX_LEN)
    assert valid.all() and np.abs(scores - want).max() <= 1e-4
    c = reranker.counters
    assert c.truncated == 2 and c.reused_tokens > 0
    # Budget 400 with a ~90-token head forces several tail micro-batches sharing one prefix run.
    assert c.micro_batches >= 3


def test_tails_that_begin_with_a_letter_would_differ_with_the_space_in_the_prefix(reranker):
    plan = plan_shared(reranker.tokenizer, reranker.prefix_ids, reranker.suffix_ids, reranker.middle_budget,
                       "q", ["Hello there", "123", " two spaces", "\nline"], None)
    assert plan.unshared == {} and sorted(plan.tails) == [0, 1, 2, 3]
    with_space = reranker.tokenizer("<Document>: Hello", add_special_tokens=False)["input_ids"]
    assert reranker.tokenizer(" Hello", add_special_tokens=False)["input_ids"][0] in with_space


def test_truncated_pairs_take_the_official_path(reranker):
    plan = plan_shared(reranker.tokenizer, reranker.prefix_ids, reranker.suffix_ids, reranker.middle_budget,
                       "q", ["short", "long document " * 100], None)
    assert sorted(plan.tails) == [0] and sorted(plan.unshared) == [1] and plan.truncated == 1
    assert len(plan.unshared[1]) == MAX_LEN
    assert plan.unshared[1] == reranker.tokenize_pairs([("q", "long document " * 100)])[0]


def test_a_query_longer_than_the_budget_falls_back_for_every_pair(reranker, reranker_reference):
    query = "very long query " * 60
    scores, valid = reranker.score_candidates(query, ["a", "b c"])
    want = ref.rerank(*reranker_reference, [(query, "a"), (query, "b c")], MAX_LEN)
    assert valid.all() and np.abs(scores - want).max() <= 1e-4
    assert reranker.score_candidates(query, [])[0].shape == (0,)


starts = st.sampled_from(["", " ", "  ", "\n", "7", "A", "é", "中", "-", "\t"])
words = st.text(alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "Zs")), max_size=30)
docs = st.builds(lambda s, w: s + w, starts, words)


@settings(deadline=None, max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.builds(lambda s, w: s + w, starts, st.text(max_size=40)),
       instruction=st.one_of(st.none(), st.text(min_size=1, max_size=60)),
       documents=st.lists(docs, min_size=1, max_size=8))
def test_shared_prefix_property(reranker, reranker_reference, query, instruction, documents):
    scores, valid = reranker.score_candidates(query, documents, instruction=instruction)
    kwargs = {"instruction": instruction} if instruction is not None else {}
    want = ref.rerank(*reranker_reference, [(query, d) for d in documents], MAX_LEN, **kwargs)
    assert valid.all()
    assert np.abs(scores - want).max() <= 1e-4
