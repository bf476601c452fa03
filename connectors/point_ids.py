"""Deterministic Qdrant point ids. A chunk keeps its id across reruns, machines and qbatch versions, so
re-indexing overwrites points instead of duplicating them, and a client can compute the id of
`(doc_id, chunk)` without asking Qdrant."""

from __future__ import annotations

import operator
import uuid

# Published in the README. Changing it silently re-keys every collection ever written: never do that.
QBATCH_NAMESPACE = uuid.UUID("1814d781-8df1-42ec-837d-599d88e30924")


def point_id(doc_id: str, chunk: int) -> str:
    """The point id of chunk `chunk` of document `doc_id`: uuid5(QBATCH_NAMESPACE, "{doc_id}#{chunk}")."""
    # operator.index accepts numpy/Arrow integers (formatted as plain digits) but refuses floats, and
    # bools are refused because f"{True}" would quietly give a different id than chunk 1.
    try:
        n = operator.index(chunk) if not isinstance(chunk, bool) else -1
    except TypeError:
        n = -1
    if n < 0:
        raise ValueError(f"chunk must be a non-negative integer, got {chunk!r} for doc_id {doc_id!r}")
    return str(uuid.uuid5(QBATCH_NAMESPACE, f"{doc_id}#{n}"))


def point_ids(doc_ids: list[str], chunks: list[int]) -> list[str]:
    """Ids for parallel lists of doc ids and chunk numbers."""
    if len(doc_ids) != len(chunks):
        raise ValueError(f"doc_ids has {len(doc_ids)} entries but chunks has {len(chunks)}")
    return [point_id(d, c) for d, c in zip(doc_ids, chunks)]
