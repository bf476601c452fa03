"""Checkpoint layouts: the packaged all-MiniLM-L6-v2 must match sentence-transformers itself."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from qbatch.pipeline import Embedder
from qbatch.pipeline.encoder_checkpoint import checkpoint_digest, read_layout, resolve_checkpoint
from tests.pipeline.text_samples import QUERIES, TEXTS


def test_minilm_matches_sentence_transformers(minilm_checkpoint):
    from sentence_transformers import SentenceTransformer

    emb = Embedder.from_pretrained(minilm_checkpoint, device="cpu", dtype="float32", max_batch_tokens=300)
    long_text = "token budget " * 200  # over MiniLM's 256-token max_seq_length
    texts = TEXTS + [long_text]
    got = emb.embed_documents(texts)
    st = SentenceTransformer(str(minilm_checkpoint), device="cpu")
    want = st.encode(texts, normalize_embeddings=False, convert_to_numpy=True)  # its Normalize module runs
    cos = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert cos.min() >= 0.9999
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert emb.kind == "sentence-transformers" and emb.dim == 384 and emb.max_length == 256
    assert emb.counters.truncated == 1
    # No instruction for queries unless one is given.
    assert np.allclose(emb.embed_queries(QUERIES), st.encode(QUERIES), atol=1e-5)
    with pytest.raises(ValueError, match="causal"):
        emb.embed_token_ids(emb.tokenize(["a"]), packed=True)


def test_layouts_are_read_from_the_checkpoint(minilm_checkpoint, tiny_embedding_checkpoint):
    layout = read_layout(minilm_checkpoint)
    assert (layout.kind, layout.pooling, layout.normalize, layout.max_seq_length) == (
        "sentence-transformers", "mean", True, 256)
    assert read_layout(tiny_embedding_checkpoint).kind == "qwen3"


def test_unsupported_pooling_is_refused(minilm_checkpoint, tmp_path):
    copy = tmp_path / "minilm-max"
    shutil.copytree(minilm_checkpoint, copy)
    pooling = copy / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    config.update(pooling_mode_mean_tokens=False, pooling_mode_max_tokens=True)
    pooling.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="lasttoken/mean/cls"):
        read_layout(copy)
    # The fingerprint covers the configs, so the edited copy is a different model.
    assert checkpoint_digest(copy) != checkpoint_digest(minilm_checkpoint)


def test_missing_paths_never_fall_back(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_checkpoint(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        resolve_checkpoint(tmp_path / "empty")


def test_display_names_are_stable_and_recognisable(tmp_path):
    from qbatch.pipeline.encoder_checkpoint import display_name

    snapshot = tmp_path / "hub" / "models--Qwen--Qwen3-Embedding-0.6B" / "snapshots" / "abc123"
    generic = tmp_path / "gt_pkg" / "model"
    plain = tmp_path / "my-finetune-v3"
    for d in (snapshot, generic, plain):
        d.mkdir(parents=True)
    assert display_name(snapshot) == "Qwen/Qwen3-Embedding-0.6B"
    assert display_name(generic) == "gt_pkg/model"
    assert display_name(plain) == "my-finetune-v3"
    assert display_name("Qwen/Qwen3-Reranker-0.6B") == "Qwen/Qwen3-Reranker-0.6B"
