"""Pooling of per-token hidden states into one vector per text, and the MRL slice-then-normalise."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

POOLING_MODES = ("lasttoken", "mean", "cls")


def last_token_pool(hidden: "torch.Tensor", attention_mask: "torch.Tensor", left_padded: bool) -> "torch.Tensor":
    """Hidden state at each row's last real token; `hidden[:, -1]` only when padding is on the left."""
    import torch

    if left_padded:
        return hidden[:, -1]
    last = attention_mask.sum(dim=1).long() - 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def gather_positions(hidden: "torch.Tensor", positions: "torch.Tensor") -> "torch.Tensor":
    """Rows of a packed `(1, T, H)` or `(T, H)` output at the given token positions (each text's end)."""
    flat = hidden.reshape(-1, hidden.shape[-1])
    return flat[positions]


def mean_pool(hidden: "torch.Tensor", attention_mask: "torch.Tensor") -> "torch.Tensor":
    """Mask-weighted mean over real tokens, as sentence-transformers' Pooling(mean)."""
    import torch

    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * mask).sum(dim=1)
    return summed / torch.clamp(mask.sum(dim=1), min=1e-9)


def cls_pool(hidden: "torch.Tensor", attention_mask: "torch.Tensor") -> "torch.Tensor":
    """First token; sentence-transformers pads on the right, so it is always real."""
    return hidden[:, 0]


def pool(mode: str, hidden: "torch.Tensor", attention_mask: "torch.Tensor", left_padded: bool) -> "torch.Tensor":
    if mode == "lasttoken":
        return last_token_pool(hidden, attention_mask, left_padded)
    if mode == "mean":
        return mean_pool(hidden, attention_mask)
    if mode == "cls":
        return cls_pool(hidden, attention_mask)
    raise ValueError(f"unsupported pooling mode {mode!r}; supported: {POOLING_MODES}")


def slice_and_normalize(pooled: np.ndarray, dim: int | None, normalize: bool = True) -> np.ndarray:
    """MRL: keep the first `dim` components, then L2-normalise; normalising first would be wrong.

    Works in float64 so rows come out unit length in float32; non-finite rows stay non-finite.
    """
    out = pooled[:, :dim].astype(np.float64) if dim is not None else pooled.astype(np.float64)
    if normalize:
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out = out / np.where(norms > 0, norms, 1.0)
    return out.astype(np.float32)
