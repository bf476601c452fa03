"""Point ids are a published contract: these values must never change."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qbatch.connectors.point_ids import QBATCH_NAMESPACE, point_id, point_ids


def test_known_values_never_change():
    # Regression pins: a change here re-keys every collection ever written.
    assert str(QBATCH_NAMESPACE) == "1814d781-8df1-42ec-837d-599d88e30924"
    assert point_id("doc-1", 0) == "27658d96-9213-5b32-9ca3-d79da078e593"


def test_matches_the_documented_formula():
    assert point_id("a/b.txt", 7) == str(uuid.uuid5(QBATCH_NAMESPACE, "a/b.txt#7"))
    assert uuid.UUID(point_id("x", 0)).version == 5


def test_numpy_integers_give_the_same_id_as_python_ints():
    assert point_id("d", np.int64(3)) == point_id("d", 3) == point_id("d", np.uint16(3))


@pytest.mark.parametrize("bad", [True, -1, 1.0, "1", None])
def test_refuses_chunks_that_are_not_non_negative_integers(bad):
    with pytest.raises(ValueError, match="chunk must be a non-negative integer"):
        point_id("d", bad)


def test_point_ids_checks_lengths():
    assert point_ids(["a", "b"], [0, 1]) == [point_id("a", 0), point_id("b", 1)]
    with pytest.raises(ValueError, match="2 entries but chunks has 1"):
        point_ids(["a", "b"], [0])


@given(st.text(), st.integers(0, 10**9), st.text(), st.integers(0, 10**9))
def test_deterministic_and_injective(doc_a, chunk_a, doc_b, chunk_b):
    assert point_id(doc_a, chunk_a) == point_id(doc_a, chunk_a)
    same_pair = (doc_a, chunk_a) == (doc_b, chunk_b)
    assert (point_id(doc_a, chunk_a) == point_id(doc_b, chunk_b)) == same_pair
