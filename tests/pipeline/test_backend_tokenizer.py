"""The shared tokenizer snapshot gives the Hugging Face tokenizer's ids, id for id: with and without
special tokens, truncated, with offsets, through EmbeddingTokenizer and the prep actors' factory; on
the tiny Qwen3 checkpoint (the real Qwen vocabulary) loaded both generically and as transformers'
Qwen2Tokenizer (which rebuilds the backend, as for the real Qwen3-Embedding), and on MiniLM. (That
the prep actors build it without transformers: tests/jobs/index/test_tokenizer_check.py.)"""

from __future__ import annotations

import json
import shutil

import pytest

from qbatch.pipeline.backend_tokenizer import BackendTokenizer, snapshot_of
from qbatch.pipeline.embedding_tokenizer import EmbeddingTokenizer
from tests.pipeline.text_samples import QUERIES, TEXTS


@pytest.fixture(scope="module")
def checkpoints(tiny_embedding_checkpoint, minilm_checkpoint, tmp_path_factory):
    """name -> checkpoint folder: the tiny Qwen3 as built, the same loaded through Qwen2Tokenizer, MiniLM."""
    as_qwen2 = tmp_path_factory.mktemp("qwen2-tokenizer-class") / "checkpoint"
    shutil.copytree(tiny_embedding_checkpoint, as_qwen2)
    config = json.loads((as_qwen2 / "tokenizer_config.json").read_text())
    (as_qwen2 / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer_class": "Qwen2Tokenizer"}))
    return {"qwen3": tiny_embedding_checkpoint, "qwen3-as-Qwen2Tokenizer": as_qwen2, "minilm": minilm_checkpoint}


@pytest.mark.parametrize("name", ["qwen3", "qwen3-as-Qwen2Tokenizer", "minilm"])
def test_ids_truncation_and_offsets_equal_the_hugging_face_tokenizer(checkpoints, name):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(checkpoints[name])
    if name == "qwen3-as-Qwen2Tokenizer":
        assert type(hf).__name__ == "Qwen2Tokenizer"  # the class that rebuilds its backend in __init__
    backend = BackendTokenizer(snapshot_of(hf))
    texts = TEXTS + QUERIES
    for specials in (True, False):
        assert backend(texts, add_special_tokens=specials)["input_ids"] == \
            hf(texts, add_special_tokens=specials)["input_ids"]
        for text in texts:  # a single string answers with flat lists, as the wrapper does
            assert backend(text, add_special_tokens=specials)["input_ids"] == \
                hf(text, add_special_tokens=specials)["input_ids"]
    for max_length in (2, 5, 48):
        got = backend(texts, truncation=True, max_length=max_length)["input_ids"]
        assert got == hf(texts, truncation=True, max_length=max_length)["input_ids"]
        assert max(map(len, got)) == max_length  # the long samples really were cut
    # Truncation is switched off again for the next untruncated call, as the wrapper does.
    assert backend(texts)["input_ids"] == hf(texts)["input_ids"]
    for text in texts:
        assert backend(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"] == \
            hf(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]


@pytest.mark.parametrize("name", ["qwen3", "minilm"])
def test_embedding_tokenizer_on_the_snapshot_tokenizes_as_on_transformers(checkpoints, name):
    loaded = EmbeddingTokenizer.from_pretrained(checkpoints[name], max_length=48)
    shared = EmbeddingTokenizer.from_pretrained(checkpoints[name], max_length=48, defer_loading=True)
    shared.hf_tokenizer = BackendTokenizer(snapshot_of(loaded.hf_tokenizer))  # checks the end-token rule
    for query, instruction in ((False, None), (True, None), (True, "Given a product, find it")):
        assert shared.tokenize(TEXTS, query=query, instruction=instruction) == \
            loaded.tokenize(TEXTS, query=query, instruction=instruction)
    assert shared.truncated == loaded.truncated > 0


def test_a_snapshot_of_another_version_or_a_slow_tokenizer_is_refused_or_absent(checkpoints):
    from transformers import AutoTokenizer

    state = json.loads(snapshot_of(AutoTokenizer.from_pretrained(checkpoints["minilm"])))
    with pytest.raises(ValueError, match="snapshot version 99"):
        BackendTokenizer(json.dumps({**state, "version": 99}))
    with pytest.raises(ValueError, match="truncation needs max_length"):
        BackendTokenizer(json.dumps(state))(["x"], truncation=True)
    assert snapshot_of(object()) is None  # no `tokenizers` backend: the prep actors load it themselves
