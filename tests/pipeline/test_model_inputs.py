from __future__ import annotations

import pytest
import torch

from qbatch.pipeline.model_inputs import check_pairs, check_texts, pack_ids, pad_ids


def test_text_checks_name_the_index():
    assert check_texts(["a", ""]) == ["a", ""]
    with pytest.raises(TypeError, match=r"texts\[1\] is NoneType"):
        check_texts(["a", None])
    with pytest.raises(TypeError, match=r"texts\[0\] is int"):
        check_texts([3])
    with pytest.raises(TypeError, match="single str"):
        check_texts("abc")


def test_pair_checks_name_the_index_and_part():
    assert check_pairs([("q", "")]) == [("q", "")]
    with pytest.raises(TypeError, match=r"pairs\[1\] document is NoneType"):
        check_pairs([("q", "d"), ("q", None)])
    with pytest.raises(TypeError, match=r"pairs\[0\] must be"):
        check_pairs([("q", "d", "x")])


def test_padding_sides_and_packing():
    ids, mask = pad_ids([[1, 2, 3], [4]], pad_id=0, left=True, device=torch.device("cpu"))
    assert ids.tolist() == [[1, 2, 3], [0, 0, 4]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    ids, mask = pad_ids([[1, 2, 3], [4]], pad_id=0, left=False, device=torch.device("cpu"))
    assert ids.tolist() == [[1, 2, 3], [4, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    flat, positions, ends = pack_ids([[1, 2, 3], [4], [5, 6]], torch.device("cpu"))
    assert flat.tolist() == [[1, 2, 3, 4, 5, 6]]
    assert positions.tolist() == [[0, 1, 2, 0, 0, 1]] and ends.tolist() == [2, 3, 5]
