"""Whole queries -> prepared parts of at most `max_pairs` pairs, each with a name that depends only on
its content, so a retried task writes the same part under the same name (and a part a failed attempt
left behind is never acknowledged). A query bigger than `max_pairs` gets a part of its own: a query is
always scored in one call."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import pyarrow as pa


def part_name(first_query_id: str) -> str:
    """The unit id of the part that starts with this query (query ids are unique within a day)."""
    return "prep-" + hashlib.sha1(first_query_id.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def pack_queries(rows: pa.Table, max_pairs: int) -> Iterator[tuple[str, pa.Table]]:
    """(unit id, rows) per part; `rows` holds whole queries, contiguous, in the order to keep."""
    if rows.num_rows == 0:
        return
    ids = rows.column("query_id").to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    sizes = np.diff(np.r_[starts, len(ids)])
    lo, pairs = 0, 0
    for start, size in zip(starts.tolist(), sizes.tolist()):
        if pairs and pairs + size > max_pairs:
            yield part_name(str(ids[lo])), rows.slice(lo, start - lo)
            lo, pairs = start, 0
        pairs += size
    yield part_name(str(ids[lo])), rows.slice(lo, len(ids) - lo)
