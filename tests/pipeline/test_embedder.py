"""Embedder vs the independent reference (tests/pipeline/qwen3_reference.py) on a wide-init tiny Qwen3."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from qbatch.common.errors import NonFiniteOutputError
from qbatch.pipeline import Embedder
from qbatch.pipeline.qwen3_templates import END_TOKEN_ID
from tests.pipeline import qwen3_reference as ref
from tests.pipeline.text_samples import QUERIES, TEXTS

MAX_LEN = 48
FP32 = {"device": "cpu", "dtype": "float32"}  # parity bounds hold at fp32; bf16 has its own tests


@pytest.fixture(scope="module")
def reference(tiny_embedding_checkpoint):
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(tiny_embedding_checkpoint, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_embedding_checkpoint)


@pytest.fixture(scope="module")
def embedder(tiny_embedding_checkpoint):
    return Embedder.from_pretrained(tiny_embedding_checkpoint, **FP32, max_length=MAX_LEN)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_documents_match_the_reference(embedder, reference):
    got = embedder.embed_documents(TEXTS)
    want = ref.embed(*reference, TEXTS, MAX_LEN)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), embedder.hidden_size)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert _cosines(got, want).min() >= 0.9999
    # The wide init makes inputs distinguishable; a constant output would also "match" a broken reference.
    assert _cosines(got[:1], got[1:]).max() < 0.99


@pytest.mark.parametrize("instruction", [None, "Given a product search query in any language, retrieve products"])
def test_queries_match_the_reference(embedder, reference, instruction):
    got = embedder.embed_queries(QUERIES, instruction=instruction)
    texts = [ref.query_text(q, instruction) if instruction else ref.query_text(q) for q in QUERIES]
    assert _cosines(got, ref.embed(*reference, texts, MAX_LEN)).min() >= 0.9999
    # The instruction changes the vector: it is really applied.
    assert _cosines(got, embedder.embed_documents(QUERIES)).max() < 0.999


def test_mrl_dim_slices_then_normalises(tiny_embedding_checkpoint, reference):
    small = Embedder.from_pretrained(tiny_embedding_checkpoint, **FP32, dim=32, max_length=MAX_LEN)
    got = small.embed_documents(TEXTS)
    assert got.shape == (len(TEXTS), 32) and small.model_fingerprint["dim"] == 32
    assert _cosines(got, ref.embed(*reference, TEXTS, MAX_LEN, dim=32)).min() >= 0.9999


@pytest.mark.parametrize("budget", [1, 64, 200, 100_000])
def test_micro_batch_budget_does_not_change_vectors(tiny_embedding_checkpoint, embedder, budget):
    other = Embedder.from_pretrained(tiny_embedding_checkpoint, **FP32, max_length=MAX_LEN, max_batch_tokens=budget)
    got = other.embed_documents(TEXTS)
    assert _cosines(got, embedder.embed_documents(TEXTS)).min() >= 0.9999
    if budget == 1:
        assert other.counters.micro_batches == len(TEXTS)
    if budget == 100_000:  # only the padding rule cuts batches now: 2% or one pass's cost per batch
        c = other.counters
        assert other.pass_cost_tokens == 64  # fp32: a pass costs fewer tokens' worth than in bf16
        assert c.computed_tokens - c.real_tokens <= max(0.02 * c.computed_tokens,
                                                        other.pass_cost_tokens * c.micro_batches)


def test_packed_path_matches_padded(embedder):
    ids = embedder.tokenize(TEXTS + QUERIES)
    padded, _ = embedder.embed_token_ids(ids, packed=False)
    before = embedder.counters.computed_tokens
    packed, valid = embedder.embed_token_ids(ids, packed=True)
    assert valid.all() and _cosines(packed, padded).min() >= 0.9999
    # Packs compute no padding.
    assert embedder.counters.computed_tokens - before == sum(len(x) for x in ids)
    assert not embedder.packed_by_default  # CPU rule: padded, length-sorted batches


def test_tokenize_appends_the_end_token_and_counts_truncation(tiny_embedding_checkpoint, reference):
    emb = Embedder.from_pretrained(tiny_embedding_checkpoint, **FP32, max_length=MAX_LEN)
    ids = emb.tokenize(TEXTS)
    _, tok = reference
    assert ids == tok(TEXTS, truncation=True, max_length=MAX_LEN)["input_ids"]
    assert all(seq[-1] == END_TOKEN_ID and len(seq) <= MAX_LEN for seq in ids)
    assert emb.counters.truncated == 2
    assert emb.tokenize([""]) == [[END_TOKEN_ID]]


def test_a_tokenizer_without_the_post_processor_gets_the_end_token_appended(
        tiny_embedding_checkpoint, tiny_reranker_checkpoint, reference):
    from transformers import AutoTokenizer

    emb = Embedder.from_pretrained(tiny_embedding_checkpoint, **FP32, max_length=MAX_LEN)
    emb.tokenizer = AutoTokenizer.from_pretrained(tiny_reranker_checkpoint)  # no <|endoftext|> appended
    assert emb.tokenizer("a")["input_ids"][-1] != END_TOKEN_ID
    assert emb.tokenize(TEXTS) == reference[1](TEXTS, truncation=True, max_length=MAX_LEN)["input_ids"]


def test_counters_report_padding_efficiency(tiny_embedding_checkpoint):
    emb = Embedder.from_pretrained(tiny_embedding_checkpoint, **FP32, max_length=MAX_LEN, max_batch_tokens=10_000)
    ids = [[9707] * 59 + [END_TOKEN_ID], [9707] * 58 + [END_TOKEN_ID]]  # 119 real tokens padded to 2 x 60
    emb.embed_token_ids(ids)
    c = emb.counters
    assert (c.real_tokens, c.computed_tokens, c.micro_batches) == (119, 120, 1)
    assert c.padding_efficiency == pytest.approx(c.real_tokens / c.computed_tokens)
    emb.reset_counters()
    assert emb.counters.real_tokens == 0


def test_bad_inputs_raise_type_errors_naming_the_index(embedder):
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        embedder.embed_documents(["ok", None])
    with pytest.raises(TypeError, match=r"texts\[0\]"):
        embedder.embed_queries([5])
    assert embedder.embed_documents([""]).shape == (1, embedder.dim)
    with pytest.raises(ValueError, match="end with"):
        embedder.embed_token_ids([[1, 2, 3]])


def test_dim_and_missing_model_are_clear_errors(tiny_embedding_checkpoint, tmp_path):
    for dim in (16, 65):
        with pytest.raises(ValueError, match="dim must be an integer from 32"):
            Embedder.from_pretrained(tiny_embedding_checkpoint, **FP32, dim=dim)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        Embedder.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no-such-org/no-such-model"):
        Embedder.from_pretrained("no-such-org/no-such-model")


def test_non_finite_vectors_are_masked_and_public_calls_raise(tiny_embedding_checkpoint):
    emb = Embedder.from_pretrained(tiny_embedding_checkpoint, **FP32, max_length=MAX_LEN)
    texts = ["fine text", "zebra poison", "other fine text"]
    poison_id = emb.tokenizer(" poison", add_special_tokens=False)["input_ids"][0]
    assert all(poison_id not in ids for ids in emb.tokenize([texts[0], texts[2]]))
    # Fault injection: a NaN embedding row poisons exactly the inputs that contain that token.
    with torch.no_grad():
        emb.model.get_input_embeddings().weight[poison_id] = float("nan")
    vectors, valid = emb.embed_token_ids(emb.tokenize(texts))
    assert valid.tolist() == [True, False, True]
    assert (vectors[1] == 0).all() and np.isfinite(vectors).all()
    with pytest.raises(NonFiniteOutputError) as info:
        emb.embed_documents(texts)
    assert info.value.indices == [1]


def test_fingerprint_and_metadata(embedder, tiny_embedding_checkpoint):
    fp = embedder.model_fingerprint
    assert fp["kind"] == "qwen3" and fp["dim"] == 64 and len(fp["sha"]) == 16
    assert fp["name"] == tiny_embedding_checkpoint.name == embedder.model_name
    assert Embedder.from_pretrained(tiny_embedding_checkpoint, **FP32).model_fingerprint == fp
    assert embedder.max_length == MAX_LEN and embedder.hidden_size == 64


def test_import_pipeline_stays_light():
    code = "import sys, pipeline; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# bf16, the CPU default where the CPU multiplies bf16 natively (pipeline/torch_devices.resolve_dtype). Its own
# bounds: measured min cosine 0.9995 on these inputs with the wide-init model (fp32: >= 0.99999).
BF16_MIN_COSINE = 0.999


@pytest.mark.parametrize("native", [True, False])
def test_default_precision_follows_what_torch_reports_about_the_cpu(tiny_embedding_checkpoint, cpu_reports_native_bf16,
                                                                 native):
    cpu_reports_native_bf16(native)
    emb = Embedder.from_pretrained(tiny_embedding_checkpoint, device="cpu", max_length=MAX_LEN)
    want = torch.bfloat16 if native else torch.float32
    assert emb.precision == str(want).removeprefix("torch.")
    assert {p.dtype for p in emb.model.parameters()} == {want}
    vectors = emb.embed_documents(TEXTS)
    assert vectors.dtype == np.float32 and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_bf16_vectors_stay_close_to_the_fp32_reference(tiny_embedding_checkpoint, embedder, reference):
    emb = Embedder.from_pretrained(tiny_embedding_checkpoint, device="cpu", dtype="bfloat16", max_length=MAX_LEN)
    assert emb.precision == "bfloat16"
    docs = emb.embed_documents(TEXTS)
    queries = emb.embed_queries(QUERIES)
    assert docs.dtype == np.float32 and np.allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-5)
    assert _cosines(docs, ref.embed(*reference, TEXTS, MAX_LEN)).min() >= BF16_MIN_COSINE
    assert _cosines(queries, ref.embed(*reference, [ref.query_text(q) for q in QUERIES], MAX_LEN)).min() \
        >= BF16_MIN_COSINE
    # It really ran in bf16: rounding moves the vectors off the fp32 ones.
    assert _cosines(docs, embedder.embed_documents(TEXTS)).min() < 0.99999


def test_bf16_keeps_minilm_recall_on_real_text(minilm_checkpoint, stdlib_pairs):
    """Real weights, real text: recall@10 of docstring summaries against their bodies, bf16 vs fp32."""
    pairs = stdlib_pairs[:600]

    def recall_at_10(dtype: str) -> float:
        emb = Embedder.from_pretrained(minilm_checkpoint, device="cpu", dtype=dtype)
        docs = emb.embed_documents([p["document"] for p in pairs])
        queries = emb.embed_queries([p["query"] for p in pairs])
        top = np.argsort(-(queries @ docs.T), axis=1)[:, :10]
        return float(np.mean([i in top[i] for i in range(len(pairs))]))

    fp32, bf16 = recall_at_10("float32"), recall_at_10("bfloat16")
    assert fp32 >= 0.65, fp32  # the task is real: a broken model scores near 10/600
    assert abs(bf16 - fp32) <= 0.005, (fp32, bf16)


def test_embedding_actors_never_load_the_tokenizer(tiny_embedding_checkpoint):
    """Actors get token ids from the prep stage; loading the tokenizer there only slows their start."""
    emb = Embedder.from_pretrained(tiny_embedding_checkpoint, **FP32, max_length=MAX_LEN)
    ids = [[9707, 1879, END_TOKEN_ID], [END_TOKEN_ID]]
    vectors, valid = emb.embed_token_ids(ids)
    assert valid.all() and vectors.shape == (2, emb.dim)
    assert emb.text_tokenizer._hf_tokenizer is None
    assert emb.tokenize(["x"]) == [[87, END_TOKEN_ID]]  # loaded on first use
    assert emb.text_tokenizer._hf_tokenizer is not None
