"""Reranker vs the independent full-vocabulary reference on a wide-init tiny Qwen3ForCausalLM."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qbatch.common.errors import NonFiniteOutputError
from qbatch.pipeline import Reranker
from tests.pipeline import qwen3_reference as ref
from tests.pipeline.text_samples import QUERIES, TEXTS

MAX_LEN = 160  # the fixed template takes ~60 tokens, so long documents get truncated
PAIRS = [(q, d) for q in QUERIES[:3] for d in TEXTS]
FP32 = {"device": "cpu", "dtype": "float32"}  # parity bounds hold at fp32; bf16 has its own tests


@pytest.fixture(scope="module")
def reranker(tiny_reranker_checkpoint):
    return Reranker.from_pretrained(tiny_reranker_checkpoint, **FP32, max_length=MAX_LEN)


@pytest.mark.parametrize("instruction", [None, "Given a product search query, judge whether the product matches"])
def test_scores_match_the_reference(reranker, reranker_reference, instruction):
    got = reranker.score(PAIRS, instruction=instruction)
    want = ref.rerank(*reranker_reference, PAIRS, MAX_LEN, **({"instruction": instruction} if instruction else {}))
    assert got.dtype == np.float32 and got.shape == (len(PAIRS),)
    assert np.abs(got - want).max() <= 1e-4
    assert ((got >= 0) & (got <= 1)).all()
    assert got.std() > 0.01  # the wide init spreads scores; a constant would hide template bugs


def test_truncation_cuts_the_middle_tail_like_the_official_code(tiny_reranker_checkpoint, reranker_reference):
    rr = Reranker.from_pretrained(tiny_reranker_checkpoint, **FP32, max_length=MAX_LEN)
    ids = rr.tokenize_pairs(PAIRS)
    assert all(len(seq) <= MAX_LEN for seq in ids)
    assert rr.counters.truncated == 2 * 3
    assert rr.prefix_ids[0] == 151644 and ids[0][-len(rr.suffix_ids):] == rr.suffix_ids


@pytest.mark.parametrize("budget", [1, 500, 100_000])
def test_micro_batch_budget_does_not_change_scores(tiny_reranker_checkpoint, reranker, budget):
    other = Reranker.from_pretrained(tiny_reranker_checkpoint, **FP32, max_length=MAX_LEN, max_batch_tokens=budget)
    assert np.abs(other.score(PAIRS) - reranker.score(PAIRS)).max() <= 1e-5
    if budget == 1:
        assert other.counters.micro_batches == len(PAIRS)


def test_yes_no_ids_are_looked_up(reranker):
    assert (reranker.yes_id, reranker.no_id) == (9693, 2152)


def test_bad_pairs_raise_type_errors_naming_the_index(reranker):
    with pytest.raises(TypeError, match=r"pairs\[1\] document"):
        reranker.score([("q", "d"), ("q", None)])
    with pytest.raises(TypeError, match=r"pairs\[0\] query"):
        reranker.score([(3, "d")])
    with pytest.raises(TypeError, match="query is NoneType"):
        reranker.score_candidates(None, ["d"])
    with pytest.raises(TypeError, match=r"documents\[1\]"):
        reranker.score_candidates("q", ["d", None])
    assert reranker.score([("", "")]).shape == (1,)
    with pytest.raises(ValueError, match="no room"):
        Reranker(reranker.model, reranker.tokenizer, name="x", digest="x", max_length=20,
                 device=torch.device("cpu"), max_batch_tokens=100)


def test_non_finite_scores_are_masked_and_score_raises(tiny_reranker_checkpoint):
    rr = Reranker.from_pretrained(tiny_reranker_checkpoint, **FP32, max_length=MAX_LEN)
    docs = ["fine doc", "zebra poison", "another fine doc"]
    poison_id = rr.tokenizer(" poison", add_special_tokens=False)["input_ids"][0]
    # Fault injection: a NaN embedding row poisons exactly the pairs that contain that token.
    with torch.no_grad():
        rr.model.get_input_embeddings().weight[poison_id] = float("nan")
    scores, valid = rr.score_token_ids(rr.tokenize_pairs([("q", d) for d in docs]))
    assert valid.tolist() == [True, False, True] and scores[1] == 0.0
    shared, shared_valid = rr.score_candidates("q", docs)
    assert shared_valid.tolist() == [True, False, True]
    assert np.abs(shared[shared_valid] - scores[valid]).max() <= 1e-4
    with pytest.raises(NonFiniteOutputError) as info:
        rr.score([("q", d) for d in docs])
    assert info.value.indices == [1]


# bf16, the CPU default where the CPU multiplies bf16 natively. Its own bound: measured max |delta| 0.013
# on these pairs with the wide-init model (fp32: <= 1e-4).
BF16_MAX_SCORE_DELTA = 2e-2


@pytest.mark.parametrize("native", [True, False])
def test_default_precision_follows_what_torch_reports_about_the_cpu(tiny_reranker_checkpoint, cpu_reports_native_bf16,
                                                                 native):
    cpu_reports_native_bf16(native)
    rr = Reranker.from_pretrained(tiny_reranker_checkpoint, device="cpu", max_length=MAX_LEN)
    want = torch.bfloat16 if native else torch.float32
    assert rr.precision == str(want).removeprefix("torch.")
    assert {p.dtype for p in rr.model.parameters()} == {want}
    assert rr.score(PAIRS[:3]).dtype == np.float32


def test_bf16_scores_stay_close_to_the_fp32_reference(tiny_reranker_checkpoint, reranker, reranker_reference):
    rr = Reranker.from_pretrained(tiny_reranker_checkpoint, device="cpu", dtype="bfloat16", max_length=MAX_LEN)
    want = ref.rerank(*reranker_reference, PAIRS, MAX_LEN)
    got = rr.score(PAIRS)
    shared = np.concatenate([rr.score_candidates(q, TEXTS)[0] for q in QUERIES[:3]])  # PAIRS' order
    assert got.dtype == np.float32 and ((got >= 0) & (got <= 1)).all()
    assert np.abs(got - want).max() <= BF16_MAX_SCORE_DELTA
    assert np.abs(shared - want).max() <= BF16_MAX_SCORE_DELTA
    assert np.abs(got - reranker.score(PAIRS)).max() > 1e-4  # it really ran in bf16
