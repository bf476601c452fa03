"""Embedder: texts -> L2-normalised float32 vectors, with Qwen3-Embedding semantics (shared/QWEN3.md).

The Ray pipeline splits the work: a CPU stage calls `tokenize`, GPU actors call `embed_token_ids`.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from common.errors import NonFiniteOutputError
from pipeline.batch_counters import BatchCounters
from pipeline.batch_planner import MicroBatch, plan_packs, plan_padded_batches
from pipeline.embedding_forward import forward_packed, forward_padded
from pipeline.embedding_tokenizer import EmbeddingTokenizer
from pipeline.encoder_checkpoint import (EncoderLayout, checkpoint_digest, display_name, read_layout,
                                         resolve_checkpoint)
from pipeline.micro_batch_runner import run_micro_batches
from pipeline.model_inputs import check_id_lists, finite_rows
from pipeline.pooling import slice_and_normalize
from pipeline.qwen3_templates import END_TOKEN_ID
from pipeline.torch_devices import (attention_implementation, default_max_batch_tokens, resolve_device,
                                    resolve_dtype)

if TYPE_CHECKING:  # pragma: no cover
    import torch

MIN_DIM = 32


class Embedder:
    """A loaded embedding model; build it with `Embedder.from_pretrained`."""

    def __init__(self, model: Any, tokenizer: Any, layout: EncoderLayout, *, name: str, digest: str,
                 dim: int | None, max_length: int, device: "torch.device", max_batch_tokens: int) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.layout = layout
        self.model_name = name
        self.hidden_size = int(model.config.hidden_size)
        self.dim = _check_dim(dim, self.hidden_size)
        self.max_length = int(max_length)
        self.device = device
        self.max_batch_tokens = int(max_batch_tokens)
        self.counters = BatchCounters()
        self.model_fingerprint = {"name": name, "sha": digest, "dim": self.dim, "kind": self.kind}
        # One tokenisation for the whole system: the CPU prep stage uses the same class without weights.
        self.text_tokenizer = EmbeddingTokenizer(tokenizer, layout, name=name, digest=digest,
                                                 hidden_size=self.hidden_size, max_length=self.max_length)
        self._pad_id = _pad_id(tokenizer, layout)
        if layout.kind == "qwen3":
            _check_end_token_rule(tokenizer)
            if self.max_length < 2:
                raise ValueError(f"max_length must leave room for the end token, got {max_length}")
        # Padding-free packs only pay off with flash-attn varlen; on CPU SDPA a pack of T tokens costs T^2
        # attention, so CPU always takes padded length-sorted batches (fixed rule, same input -> same path).
        self.packed_by_default = layout.kind == "qwen3" and _attn_impl(model) == "flash_attention_2"

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike[str], dim: int | None = None, max_length: int = 8192,
                        device: "str | torch.device | None" = None, dtype: "str | torch.dtype | None" = None,
                        max_batch_tokens: int | None = None) -> "Embedder":
        """Load a Qwen3 or sentence-transformers checkpoint from a directory or hub id."""
        from transformers import AutoModel, AutoTokenizer

        path = resolve_checkpoint(name_or_path)
        layout = read_layout(path)
        hidden = json.loads((path / "config.json").read_text()).get("hidden_size")
        if hidden is not None:
            _check_dim(dim, int(hidden))  # fail before spending time on loading weights
        dev = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, dev)
        kwargs: dict[str, Any] = {"dtype": torch_dtype}
        if layout.kind == "qwen3":
            kwargs["attn_implementation"] = attention_implementation(dev)
        model = AutoModel.from_pretrained(path, **kwargs).to(dev).eval()
        tokenizer = AutoTokenizer.from_pretrained(path)
        if layout.max_seq_length is not None:
            max_length = min(max_length, int(layout.max_seq_length))
        return cls(model, tokenizer, layout, name=display_name(name_or_path), digest=checkpoint_digest(path),
                   dim=dim, max_length=max_length, device=dev,
                   max_batch_tokens=max_batch_tokens or default_max_batch_tokens(dev))

    @property
    def kind(self) -> str:
        return self.layout.kind

    def reset_counters(self) -> None:
        self.counters = BatchCounters()

    def tokenize(self, texts: Sequence[str], query: bool = False, instruction: str | None = None) -> list[list[int]]:
        """Token ids with the query template, truncation and (Qwen3) the end token applied."""
        before = self.text_tokenizer.truncated
        ids = self.text_tokenizer.tokenize(texts, query=query, instruction=instruction)
        self.counters.truncated += self.text_tokenizer.truncated - before
        return ids

    def embed_token_ids(self, id_lists: Sequence[Sequence[int]],
                        packed: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`(vectors (n, dim) float32, valid mask)`; non-finite rows are zeros and False, never raised.

        `packed=None` follows the device rule (packs only with flash-attn); True/False force a path.
        """
        ids = check_id_lists(id_lists)
        if not ids:
            return np.zeros((0, self.dim), dtype=np.float32), np.zeros(0, dtype=bool)
        if self.kind == "qwen3":
            bad = [i for i, seq in enumerate(ids) if seq[-1] != END_TOKEN_ID]
            if bad:
                raise ValueError(f"inputs {bad[:10]} do not end with <|endoftext|> ({END_TOKEN_ID}); "
                                 "tokenise them with Embedder.tokenize")
        use_packs = self.packed_by_default if packed is None else packed
        if use_packs and self.kind != "qwen3":
            raise ValueError("packed sequences need a causal model; sentence-transformers encoders are bidirectional")
        lengths = [len(seq) for seq in ids]
        if use_packs:
            batches = plan_packs(lengths, self.max_batch_tokens)
        else:
            batches = plan_padded_batches(lengths, self.max_batch_tokens)
        pooled = run_micro_batches(batches, lambda b: self._run(b, ids, use_packs), self.device)
        vectors = slice_and_normalize(pooled, self.dim, self.layout.normalize)
        valid = finite_rows(vectors)
        vectors[~valid] = 0.0
        return vectors, valid

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Documents embedded as is, no instruction."""
        return self._embed_checked(self.tokenize(texts))

    def embed_queries(self, texts: Sequence[str], instruction: str | None = None) -> np.ndarray:
        """Queries with `Instruct: {task}\\nQuery:{query}` (Qwen3; `None` = web-search task)."""
        return self._embed_checked(self.tokenize(texts, query=True, instruction=instruction))

    def _embed_checked(self, ids: list[list[int]]) -> np.ndarray:
        vectors, valid = self.embed_token_ids(ids)
        if not valid.all():
            bad = np.flatnonzero(~valid).tolist()
            raise NonFiniteOutputError(
                f"{self.model_name} produced non-finite vectors for inputs {bad[:20]}"
                f"{' ...' if len(bad) > 20 else ''}; try dtype=float32 or bfloat16", bad)
        return vectors

    def _run(self, batch: MicroBatch, ids: list[list[int]], packed: bool) -> np.ndarray:
        rows = [ids[i] for i in batch.indices]
        if packed:
            out = forward_packed(self.model, rows, self.device)
            computed = batch.real_tokens
        else:
            out = forward_padded(self.model, rows, self._pad_id, left_padded=self.kind == "qwen3",
                                 pooling=self.layout.pooling, device=self.device)
            computed = batch.padded_tokens
        # Counted after the forward succeeds, so a batch split after running out of memory counts once.
        self.counters.real_tokens += batch.real_tokens
        self.counters.computed_tokens += computed
        self.counters.micro_batches += 1
        return out.cpu().numpy()


def _check_dim(dim: int | None, hidden: int) -> int:
    if dim is None:
        return hidden
    if isinstance(dim, bool) or not isinstance(dim, int) or not MIN_DIM <= dim <= hidden:
        raise ValueError(f"dim must be an integer from {MIN_DIM} to the model's hidden size {hidden}, got {dim!r}")
    return dim


def _pad_id(tokenizer: Any, layout: EncoderLayout) -> int:
    if layout.kind == "qwen3":
        return END_TOKEN_ID
    return int(tokenizer.pad_token_id) if tokenizer.pad_token_id is not None else 0


def _check_end_token_rule(tokenizer: Any) -> None:
    """The tokenizer's specials must be nothing or exactly the end token, else `tokenize` would differ."""
    with_special = tokenizer("a")["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    if with_special not in (plain, plain + [END_TOKEN_ID]):
        raise ValueError(f"unexpected Qwen3 tokenizer post-processor: 'a' -> {with_special}, "
                         f"expected {plain} or {plain + [END_TOKEN_ID]}")


def _attn_impl(model: Any) -> str:
    return str(getattr(model.config, "_attn_implementation", None) or "sdpa")

