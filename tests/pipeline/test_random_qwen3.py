"""The test tokenizer must be the real Qwen vocabulary, or every template test proves nothing."""

from __future__ import annotations

import json

import pytest

from qbatch.pipeline.qwen3_templates import ADDED_TOKENS, END_TOKEN_ID, QWEN3_VOCAB_SIZE


@pytest.fixture(scope="module")
def tokenizers(tiny_embedding_checkpoint, tiny_reranker_checkpoint):
    from transformers import AutoTokenizer

    return (AutoTokenizer.from_pretrained(tiny_embedding_checkpoint),
            AutoTokenizer.from_pretrained(tiny_reranker_checkpoint))


def test_added_tokens_sit_at_their_published_ids(tokenizers):
    for tok in tokenizers:
        assert len(ADDED_TOKENS) == 26
        assert [tok.convert_tokens_to_ids(t) for t in ADDED_TOKENS] == list(range(151643, 151669))
        assert tok.convert_tokens_to_ids("<|im_end|>") == 151645
        assert tok.convert_tokens_to_ids("<think>") == 151667
        assert tok.convert_tokens_to_ids("</think>") == 151668
        assert tok.pad_token_id == END_TOKEN_ID and tok.eos_token_id == 151645
        assert tok.padding_side == "left"


def test_yes_and_no_are_the_published_ids(tokenizers):
    _, reranker_tok = tokenizers
    assert reranker_tok("yes")["input_ids"] == [9693]
    assert reranker_tok("no")["input_ids"] == [2152]


def test_only_the_embedding_tokenizer_appends_endoftext(tokenizers):
    emb_tok, rr_tok = tokenizers
    plain = rr_tok("Hello world")["input_ids"]
    assert plain[-1] != END_TOKEN_ID
    assert emb_tok("Hello world")["input_ids"] == plain + [END_TOKEN_ID]
    # Truncation leaves room for the end token, so it is always the last real token.
    cut = emb_tok("word " * 100, truncation=True, max_length=10)["input_ids"]
    assert len(cut) == 10 and cut[-1] == END_TOKEN_ID


def test_bpe_merges_the_space_into_the_next_word(tokenizers):
    _, tok = tokenizers
    assert tok(": Hello", add_special_tokens=False)["input_ids"] == [25, 21927]
    assert tok("<|im_start|>user", add_special_tokens=False)["input_ids"][0] == 151644


def test_checkpoint_config_matches_the_vocabulary(tiny_embedding_checkpoint, tiny_reranker_checkpoint):
    for path, arch in ((tiny_embedding_checkpoint, "Qwen3Model"), (tiny_reranker_checkpoint, "Qwen3ForCausalLM")):
        config = json.loads((path / "config.json").read_text())
        assert config["vocab_size"] == QWEN3_VOCAB_SIZE == 151669
        assert config["model_type"] == "qwen3" and config["architectures"] == [arch]


def test_build_is_seeded(tmp_path, tiny_embedding_checkpoint):
    import torch
    from safetensors.torch import load_file

    from qbatch.pipeline.random_qwen3 import build_random_qwen3

    # Same arguments as the session fixture (seed 0): the same weights, bit for bit.
    again = build_random_qwen3(tmp_path / "again", kind="embedding", initializer_range=0.3, seed=0)
    wa, wb = load_file(again / "model.safetensors"), load_file(tiny_embedding_checkpoint / "model.safetensors")
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # The pooled end token must have a real embedding, not the zeroed padding row.
    assert wa["embed_tokens.weight"][END_TOKEN_ID].abs().sum() > 0
