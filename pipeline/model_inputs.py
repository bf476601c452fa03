"""Checks on caller input and padding of token-id lists into model tensors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch


def check_texts(texts: Any, what: str = "texts") -> list[str]:
    """A list of str; `None` or another type raises TypeError naming the index. `""` is valid."""
    if isinstance(texts, (str, bytes)):
        raise TypeError(f"{what} must be a list of strings, not a single {type(texts).__name__}")
    out = list(texts)
    for i, text in enumerate(out):
        if not isinstance(text, str):
            raise TypeError(f"{what}[{i}] is {type(text).__name__}, expected str")
    return out


def check_pairs(pairs: Any) -> list[tuple[str, str]]:
    """A list of (query, document) string pairs; a bad element raises TypeError naming its index."""
    if isinstance(pairs, (str, bytes)):
        raise TypeError("pairs must be a list of (query, document) tuples, not a string")
    out: list[tuple[str, str]] = []
    for i, pair in enumerate(pairs):
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise TypeError(f"pairs[{i}] must be a (query, document) pair, got {type(pair).__name__}")
        query, document = pair
        for part, value in (("query", query), ("document", document)):
            if not isinstance(value, str):
                raise TypeError(f"pairs[{i}] {part} is {type(value).__name__}, expected str")
        out.append((query, document))
    return out


def check_id_lists(id_lists: Any, what: str = "id_lists") -> list[list[int]]:
    out = [list(ids) for ids in id_lists]
    for i, ids in enumerate(out):
        if not ids:
            raise ValueError(f"{what}[{i}] is empty; every input needs at least one token")
    return out


def pad_ids(
    id_lists: Sequence[Sequence[int]], pad_id: int, left: bool, device: "torch.device"
) -> "tuple[torch.Tensor, torch.Tensor]":
    """`(input_ids, attention_mask)` as int64 tensors, padded to the longest row on the chosen side."""
    import torch

    width = max(len(ids) for ids in id_lists)
    ids = np.full((len(id_lists), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(id_lists), width), dtype=np.int64)
    for row, seq in enumerate(id_lists):
        if left:
            ids[row, width - len(seq):] = seq
            mask[row, width - len(seq):] = 1
        else:
            ids[row, :len(seq)] = seq
            mask[row, :len(seq)] = 1
    return torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)


def pack_ids(
    id_lists: Sequence[Sequence[int]], device: "torch.device"
) -> "tuple[torch.Tensor, torch.Tensor, torch.Tensor]":
    """One `(1, T)` row of all texts, position ids restarting at 0 per text, and each text's last position."""
    import torch

    lengths = np.asarray([len(ids) for ids in id_lists], dtype=np.int64)
    flat = np.fromiter((t for ids in id_lists for t in ids), dtype=np.int64, count=int(lengths.sum()))
    positions = np.concatenate([np.arange(n, dtype=np.int64) for n in lengths])
    ends = np.cumsum(lengths) - 1
    return (torch.from_numpy(flat).unsqueeze(0).to(device),
            torch.from_numpy(positions).unsqueeze(0).to(device),
            torch.from_numpy(ends).to(device))


def finite_rows(values: np.ndarray) -> np.ndarray:
    """Bool mask of rows whose every value is finite."""
    flat = values.reshape(values.shape[0], -1)
    return np.isfinite(flat).all(axis=1)
