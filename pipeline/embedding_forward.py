"""One forward pass of an encoder over a micro-batch: padded (any layout) or packed (causal models only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from qbatch.pipeline.model_inputs import pack_ids, pad_ids
from qbatch.pipeline.pooling import gather_positions, pool

if TYPE_CHECKING:  # pragma: no cover
    import torch


def forward_padded(
    model: Any, id_lists: Sequence[Sequence[int]], pad_id: int, left_padded: bool, pooling: str,
    device: "torch.device",
) -> "torch.Tensor":
    """Pooled `(rows, hidden)` states of one padded batch.

    Causal models pad on the left (the official Qwen3 layout, `hidden[:, -1]`); encoders with absolute
    positions (BERT) must pad on the right or their positions shift.
    """
    import torch

    input_ids, attention_mask = pad_ids(id_lists, pad_id, left=left_padded, device=device)
    with torch.inference_mode():
        hidden = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        return pool(pooling, hidden, attention_mask, left_padded).float()


def forward_packed(model: Any, id_lists: Sequence[Sequence[int]], device: "torch.device") -> "torch.Tensor":
    """Pooled `(rows, hidden)` states of texts packed into one row with no padding.

    Position ids restart at 0 per text and there is no attention mask, so transformers builds a
    block-diagonal causal mask (flash-attn varlen on CUDA). `use_cache=False` is required: with a
    cache object present the texts silently attend to each other (QWEN3.md measured cosine 0.63).
    """
    import torch

    input_ids, position_ids, ends = pack_ids(id_lists, device)
    with torch.inference_mode():
        hidden = model(input_ids=input_ids, position_ids=position_ids, attention_mask=None,
                       use_cache=False).last_hidden_state
        return gather_positions(hidden, ends).float()
