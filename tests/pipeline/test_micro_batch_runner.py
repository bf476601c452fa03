from __future__ import annotations

import numpy as np
import pytest
import torch

from qbatch.pipeline.batch_planner import plan_padded_batches
from qbatch.pipeline.micro_batch_runner import run_micro_batches


def test_out_of_memory_halves_the_batch_and_keeps_order():
    lengths = [4, 9, 2, 7, 7, 3, 1, 8]
    batches = plan_padded_batches(lengths, 10_000, min_efficiency=0.0)
    assert len(batches) == 1
    seen_rows: list[int] = []

    def run_one(batch):  # fault injection: any batch of more than 2 rows "runs out of memory"
        seen_rows.append(batch.rows)
        if batch.rows > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return batch.indices.astype(np.float32) * 10

    out = run_micro_batches(batches, run_one, torch.device("cpu"))
    assert out.tolist() == [i * 10.0 for i in range(len(lengths))]
    assert max(seen_rows) == 8 and sum(r for r in seen_rows if r <= 2) == len(lengths)


def test_a_single_row_that_does_not_fit_and_other_errors_re_raise():
    batches = plan_padded_batches([5], 10)

    def oom(batch):
        raise torch.OutOfMemoryError("injected")

    with pytest.raises(torch.OutOfMemoryError):
        run_micro_batches(batches, oom, torch.device("cpu"))

    def broken(batch):
        raise RuntimeError("not memory")

    with pytest.raises(RuntimeError, match="not memory"):
        run_micro_batches(plan_padded_batches([5, 5], 100), broken, torch.device("cpu"))
