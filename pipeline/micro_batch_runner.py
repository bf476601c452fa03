"""Run planned micro-batches, halving any that run out of accelerator memory, and restore input order."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from qbatch.pipeline.batch_planner import MicroBatch, restore_order
from qbatch.pipeline.torch_devices import is_out_of_memory, release_cached_memory

if TYPE_CHECKING:  # pragma: no cover
    import torch


def run_micro_batches(
    batches: Sequence[MicroBatch],
    run_one: Callable[[MicroBatch], np.ndarray],
    device: "torch.device",
) -> np.ndarray:
    """Outputs of `run_one` per batch, stacked in the caller's input order.

    One long batch must never kill a job, so an out-of-memory batch is split in two and both halves
    are retried; only a single row that still does not fit re-raises.
    """
    pending = list(reversed(batches))
    done: list[MicroBatch] = []
    outputs: list[np.ndarray] = []
    while pending:
        batch = pending.pop()
        try:
            out = run_one(batch)
        except Exception as error:  # noqa: BLE001 - only OOM is handled, the rest re-raises
            if not is_out_of_memory(error) or batch.rows < 2:
                raise
            del error  # drop the traceback's references to the failed batch's tensors
            release_cached_memory(device)
            first, second = batch.halves()
            pending.extend([second, first])
            continue
        done.append(batch)
        outputs.append(out)
    return restore_order(done, outputs)
