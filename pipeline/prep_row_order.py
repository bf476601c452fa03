"""The order in which the prep stage hands rows to the embed stage. Ray Data takes a prepared block in
slices of `embed.batch_size` rows; when the block is sorted by length, each slice spans a narrow range
of lengths, so its padded micro-batches carry little padding, as if the whole block (up to a
checkpoint unit) had been length-bucketed at once. Measured on 20,000 package summaries in 1,024-row
calls: padding efficiency 0.867 unsorted, 0.92 sorted per 2,500-row block."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qbatch.common.end_of_file import EOF_STAGE


def length_order(out: Mapping[str, list[Any]]) -> list[int]:
    """Positions of the prep stage's rows (columns as lists): whole documents longest first (by their
    longest chunk), a document's chunks together and in order, then rejects, then end-of-unit markers.
    Ties keep input order, so the order is deterministic."""
    docs: list[tuple[int, int, int]] = []  # (-longest chunk, first row, end row)
    rejects: list[int] = []
    markers: list[int] = []
    i, n = 0, len(out["doc_id"])
    while i < n:
        if out["reject_stage"][i] == EOF_STAGE:
            markers.append(i)
        elif out["reject_reason"][i] is not None:
            rejects.append(i)
        else:
            end = i + int(out["n_chunks"][i])  # a good document's chunks are consecutive rows
            docs.append((-max(out["n_tokens"][i:end]), i, end))
            i = end
            continue
        i += 1
    docs.sort()
    return [r for _, lo, hi in docs for r in range(lo, hi)] + rejects + markers
