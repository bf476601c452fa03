"""Embedder: texts -> L2-normalised float32 vectors, with Qwen3-Embedding semantics (shared/QWEN3.md).

The Ray pipeline splits the work: a CPU stage calls `tokenize`, GPU actors call `embed_token_ids`.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from qbatch.common.errors import NonFiniteOutputError
from qbatch.pipeline.batch_counters import BatchCounters
from qbatch.pipeline.batch_planner import MicroBatch, plan_packs, plan_padded_batches
from qbatch.pipeline.embedding_forward import forward_packed, forward_padded
from qbatch.pipeline.embedding_tokenizer import EmbeddingTokenizer
from qbatch.pipeline.encoder_checkpoint import no_progress_bars, resolve_checkpoint
from qbatch.pipeline.micro_batch_runner import run_micro_batches
from qbatch.pipeline.model_inputs import check_id_lists, finite_rows
from qbatch.pipeline.pooling import slice_and_normalize
from qbatch.pipeline.qwen3_templates import END_TOKEN_ID
from qbatch.pipeline.torch_devices import (attention_implementation, default_max_batch_tokens, pass_cost_tokens,
                                    precision_name, resolve_device, resolve_dtype)

if TYPE_CHECKING:  # pragma: no cover
    import torch

MIN_DIM = 32


class Embedder:
    """A loaded embedding model; build it with `Embedder.from_pretrained`."""

    def __init__(self, model: Any, tokenizer: EmbeddingTokenizer, *, dim: int | None, device: "torch.device",
                 max_batch_tokens: int) -> None:
        # One tokenisation for the whole system: the CPU prep stage uses the same class without weights.
        self.text_tokenizer = tokenizer
        self.model = model
        self.layout = tokenizer.layout
        self.model_name = tokenizer.model_name
        self.hidden_size = int(model.config.hidden_size)
        self.dim = _check_dim(dim, self.hidden_size)
        self.max_length = tokenizer.max_length
        self.device = device
        self.precision = precision_name(model.dtype)  # bf16 or fp32 on CPU: see torch_devices.resolve_dtype
        self.max_batch_tokens = int(max_batch_tokens)
        self.pass_cost_tokens = pass_cost_tokens(model.dtype)  # padding a batch may carry (torch_devices)
        self.counters = BatchCounters()
        self.model_fingerprint = {"name": self.model_name, "sha": tokenizer.digest, "dim": self.dim, "kind": self.kind}
        # Padding-free packs only pay off with flash-attn varlen; on CPU SDPA a pack of T tokens costs T^2
        # attention, so CPU always takes padded length-sorted batches (fixed rule, same input -> same path).
        self.packed_by_default = self.kind == "qwen3" and _attn_impl(model) == "flash_attention_2"

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike[str], dim: int | None = None, max_length: int = 8192,
                        device: "str | torch.device | None" = None, dtype: "str | torch.dtype | None" = None,
                        max_batch_tokens: int | None = None) -> "Embedder":
        """Load a Qwen3 or sentence-transformers checkpoint from a directory or hub id.

        The tokenizer loads on first use: an actor that only embeds token ids never pays for it.
        """
        from transformers import AutoModel

        path = resolve_checkpoint(name_or_path)  # a hub snapshot's folder is named after its hub id
        tokenizer = EmbeddingTokenizer.from_pretrained(path, max_length=max_length, defer_loading=True)
        _check_dim(dim, tokenizer.hidden_size)  # fail before spending time on loading weights
        dev = resolve_device(device)
        kwargs: dict[str, Any] = {"dtype": resolve_dtype(dtype, dev)}
        if tokenizer.kind == "qwen3":
            kwargs["attn_implementation"] = attention_implementation(dev)
        with no_progress_bars():
            model = AutoModel.from_pretrained(path, **kwargs).to(dev).eval()
        return cls(model, tokenizer, dim=dim, device=dev,
                   max_batch_tokens=max_batch_tokens or default_max_batch_tokens(dev))

    @property
    def tokenizer(self) -> Any:
        """The Hugging Face tokenizer (loaded on first use)."""
        return self.text_tokenizer.hf_tokenizer

    @tokenizer.setter
    def tokenizer(self, tokenizer: Any) -> None:
        self.text_tokenizer.hf_tokenizer = tokenizer

    @functools.cached_property
    def _pad_id(self) -> int:
        if self.kind == "qwen3":
            return END_TOKEN_ID
        return int(self.tokenizer.pad_token_id) if self.tokenizer.pad_token_id is not None else 0

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
            batches = plan_padded_batches(lengths, self.max_batch_tokens, pass_cost_tokens=self.pass_cost_tokens)
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


def _attn_impl(model: Any) -> str:
    return str(getattr(model.config, "_attn_implementation", None) or "sdpa")

