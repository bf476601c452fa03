"""The embedding model's tokenisation without its weights: what the CPU prep stage and the driver need
(templates, end token, truncation, the checkpoint's identity), loadable where no model fits."""

from __future__ import annotations

import functools
import json
import os
from typing import Any, Callable, Sequence

from qbatch.pipeline.encoder_checkpoint import (EncoderLayout, checkpoint_digest, display_name, read_layout,
                                         resolve_checkpoint)
from qbatch.pipeline.model_inputs import check_texts
from qbatch.pipeline.qwen3_templates import DEFAULT_TASK, END_TOKEN_ID, format_query


class EmbeddingTokenizer:
    """Token ids exactly as `Embedder.tokenize` makes them; `truncated` counts cut inputs.

    Give it a loaded Hugging Face `tokenizer`, or `load`, a function that loads one on first use: an
    embedding actor receives token ids and never needs the tokenizer, which takes seconds to load.
    """

    def __init__(self, tokenizer: Any | None, layout: EncoderLayout, *, name: str, digest: str, hidden_size: int,
                 max_length: int, load: Callable[[], Any] | None = None):
        if tokenizer is None and load is None:
            raise ValueError("EmbeddingTokenizer needs a tokenizer or a function that loads one")
        self.layout = layout
        self.model_name = name
        self.digest = digest
        self.hidden_size = int(hidden_size)
        if layout.max_seq_length is not None:
            max_length = min(max_length, int(layout.max_seq_length))
        if layout.kind == "qwen3" and max_length < 2:
            raise ValueError(f"max_length must leave room for the end token, got {max_length}")
        self.max_length = int(max_length)
        self.truncated = 0
        self._hf_tokenizer: Any = None
        self._load = load
        if tokenizer is not None:
            self.hf_tokenizer = tokenizer

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike[str], max_length: int = 8192,
                        defer_loading: bool = False) -> "EmbeddingTokenizer":
        """`defer_loading`: read the checkpoint's identity now and the tokenizer on first use."""
        path = resolve_checkpoint(name_or_path)
        config = json.loads((path / "config.json").read_text())
        load = functools.partial(_load_hf_tokenizer, path)
        return cls(None if defer_loading else load(), read_layout(path), name=display_name(name_or_path),
                   digest=checkpoint_digest(path), hidden_size=config["hidden_size"], max_length=max_length,
                   load=load)

    @property
    def hf_tokenizer(self) -> Any:
        if self._hf_tokenizer is None:
            self.hf_tokenizer = self._load()
        return self._hf_tokenizer

    @hf_tokenizer.setter
    def hf_tokenizer(self, tokenizer: Any) -> None:
        if self.kind == "qwen3":
            check_end_token_rule(tokenizer)
        self._hf_tokenizer = tokenizer

    @property
    def kind(self) -> str:
        return self.layout.kind

    def effective_query_instruction(self, instruction: str | None) -> str:
        """The instruction queries really get: Qwen3 defaults to the web-search task, encoders to none."""
        if instruction is not None:
            return instruction
        return DEFAULT_TASK if self.kind == "qwen3" else ""

    def format_query(self, text: str, instruction: str | None) -> str:
        if self.kind == "qwen3":
            return format_query(text, self.effective_query_instruction(instruction))
        # sentence-transformers models take an optional plain prompt prefix, as `encode(prompt=...)`.
        return f"{instruction}{text}" if instruction else text

    def tokenize(self, texts: Sequence[str], query: bool = False, instruction: str | None = None) -> list[list[int]]:
        """Token ids with the query template, truncation and (Qwen3) the end token applied."""
        texts = check_texts(texts)
        if query:
            texts = [self.format_query(t, instruction) for t in texts]
        if not texts:
            return []
        if self.kind == "qwen3":
            # Same ids as the official `tokenizer(..., truncation=True, max_length)` with the end-token
            # post-processor, and as "truncate to max_length-1, append 151643" without it.
            content = self.hf_tokenizer(texts, add_special_tokens=False)["input_ids"]
            keep = self.max_length - 1
            self.truncated += sum(len(ids) > keep for ids in content)
            return [list(ids[:keep]) + [END_TOKEN_ID] for ids in content]
        full = self.hf_tokenizer(texts, add_special_tokens=True)["input_ids"]
        over = [i for i, ids in enumerate(full) if len(ids) > self.max_length]
        if over:
            self.truncated += len(over)
            cut = self.hf_tokenizer([texts[i] for i in over], truncation=True,
                                    max_length=self.max_length)["input_ids"]
            for i, ids in zip(over, cut):
                full[i] = ids
        return [list(ids) for ids in full]


def _load_hf_tokenizer(path: os.PathLike[str]) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def check_end_token_rule(tokenizer: Any) -> None:
    """A Qwen3 tokenizer's specials must be nothing or exactly the end token, else `tokenize` would differ."""
    with_special = tokenizer("a")["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    if with_special not in (plain, plain + [END_TOKEN_ID]):
        raise ValueError(f"unexpected Qwen3 tokenizer post-processor: 'a' -> {with_special}, "
                         f"expected {plain} or {plain + [END_TOKEN_ID]}")


class DocumentTokenizer:
    """What the prep stage calls: documents get no instruction, unless the job sets one (symmetric
    tasks put the same instruction on both sides)."""

    def __init__(self, tokenizer: EmbeddingTokenizer, instruction: str | None):
        self.base, self.instruction = tokenizer, instruction
        self.hf_tokenizer = tokenizer.hf_tokenizer
        self.max_length = tokenizer.max_length

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return self.base.tokenize(texts, query=self.instruction is not None, instruction=self.instruction)
