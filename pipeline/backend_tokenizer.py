"""The embedding tokenizer loaded once and shared: a Hugging Face fast tokenizer reduced to its
`tokenizers` backend, so the CPU prep actors tokenise without importing transformers or torch.

Loading a tokenizer with transformers costs seconds per process (transformers imports torch), and the
prep actors start beside the embed actors, on the same cores. So the driver loads it once, as it
must anyway to check it before any write, and ships `snapshot_of(hf_tokenizer)`: the backend exactly
as transformers built it (transformers may rebuild a model's normaliser and pre-tokeniser rather than
read them from tokenizer.json), plus the two wrapper settings that change ids. `BackendTokenizer`
answers the calls qbatch makes the way the Hugging Face tokenizer does: the same backend call, the
same truncation settings (tests/pipeline/test_backend_tokenizer.py compares them id for id)."""

from __future__ import annotations

import json
from typing import Any, Sequence

SNAPSHOT_VERSION = 1


def snapshot_of(hf_tokenizer: Any) -> str | None:
    """A loaded Hugging Face tokenizer as a string for `BackendTokenizer`; None if it has no `tokenizers`
    backend (a slow tokenizer), in which case the prep actors load it themselves."""
    backend = getattr(hf_tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    return json.dumps({"version": SNAPSHOT_VERSION, "backend": backend.to_str(),
                       "truncation_side": hf_tokenizer.truncation_side,
                       "split_special_tokens": bool(getattr(hf_tokenizer, "split_special_tokens", False))})


class BackendTokenizer:
    """Callable like a Hugging Face fast tokenizer for `input_ids` (with or without special tokens,
    optionally truncated to `max_length`) and `offset_mapping`; nothing else."""

    def __init__(self, snapshot: str):
        from tokenizers import Tokenizer

        state = json.loads(snapshot)
        if state.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"tokenizer snapshot version {state.get('version')!r}, expected {SNAPSHOT_VERSION}")
        self._backend = Tokenizer.from_str(state["backend"])
        self._backend.no_padding()
        self._backend.no_truncation()
        self._backend.encode_special_tokens = state["split_special_tokens"]
        self._side = state["truncation_side"]
        self._max_length: int | None = None

    def __call__(self, text: str | Sequence[str], add_special_tokens: bool = True, truncation: bool = False,
                 max_length: int | None = None, return_offsets_mapping: bool = False,
                 return_attention_mask: bool = False, return_token_type_ids: bool = False) -> dict[str, list]:
        """`return_attention_mask` and `return_token_type_ids` are accepted and ignored: qbatch never uses
        them, and leaving them out is what makes this cheaper than the wrapper."""
        if truncation and max_length is None:
            raise ValueError("truncation needs max_length (the model's limit is not part of the snapshot)")
        batched = not isinstance(text, str)
        self._truncate_to(max_length if truncation else None)
        encodings = self._backend.encode_batch(list(text) if batched else [text], add_special_tokens=add_special_tokens)
        out: dict[str, list] = {"input_ids": [e.ids for e in encodings]}
        if return_offsets_mapping:
            out["offset_mapping"] = [list(e.offsets) for e in encodings]
        return out if batched else {key: value[0] for key, value in out.items()}

    def _truncate_to(self, max_length: int | None) -> None:
        if max_length == self._max_length:
            return
        if max_length is None:
            self._backend.no_truncation()
        else:  # what the Hugging Face wrapper sets for truncation=True
            self._backend.enable_truncation(max_length, stride=0, strategy="longest_first", direction=self._side)
        self._max_length = max_length
