from __future__ import annotations

import numpy as np
import pytest
import torch

from qbatch.pipeline.pooling import gather_positions, last_token_pool, mean_pool, pool, slice_and_normalize


def _hidden() -> torch.Tensor:
    return torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)


def test_last_token_left_padded_takes_the_final_column():
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert torch.equal(last_token_pool(_hidden(), mask, left_padded=True), _hidden()[:, -1])


def test_last_token_right_padded_gathers_at_lengths_minus_one():
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    out = last_token_pool(_hidden(), mask, left_padded=False)
    assert torch.equal(out[0], _hidden()[0, 1]) and torch.equal(out[1], _hidden()[1, 3])


def test_mean_ignores_padding_and_cls_takes_first():
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    out = mean_pool(_hidden(), mask)
    assert torch.allclose(out[0], _hidden()[0, :2].mean(0))
    assert torch.allclose(out[1], _hidden()[1].mean(0))
    assert torch.equal(pool("cls", _hidden(), mask, False), _hidden()[:, 0])
    with pytest.raises(ValueError, match="max"):
        pool("max", _hidden(), mask, False)


def test_gather_positions_of_a_pack():
    out = gather_positions(_hidden()[:1], torch.tensor([1, 3]))
    assert torch.equal(out, _hidden()[0, [1, 3]])


def test_slice_then_normalise_differs_from_normalise_then_slice():
    v = np.array([[3.0, 4.0, 12.0]], dtype=np.float32)
    out = slice_and_normalize(v, 2)
    assert np.allclose(out, [[0.6, 0.8]])
    assert np.isclose(np.linalg.norm(out), 1.0)
    wrong = (v / np.linalg.norm(v))[:, :2]
    assert not np.allclose(out, wrong)


def test_non_finite_and_zero_rows_stay_detectable():
    v = np.array([[np.nan, 1.0], [0.0, 0.0], [1.0, 1.0]], dtype=np.float32)
    out = slice_and_normalize(v, None)
    assert np.isnan(out[0]).any() and (out[1] == 0).all() and np.isclose(np.linalg.norm(out[2]), 1.0)
