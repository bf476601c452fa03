"""The rows that travel through the rerank job's prepare plan, and the rows of a prepared part.

One flat schema, PREP_SCHEMA, carries three kinds of row from the log reader to the stage that writes
prepared parts, through every shuffle and join:
- `candidate`: one (query, candidate document) pair; `doc_id` null means the query was logged without
  candidates (it may be filled by retrieval); `text` is null until the corpus join or payload lookup;
- `reject`: a row already bound for the dead-letter table, with its reason (redacted where queries are);
- `stats`: the counts of the worker that made it, as JSON, so figures of early stages reach the end.

Every "first" rule (a query's text, duplicate candidates, `candidates.max_per_query`, a corpus id's
first record) follows the order key (file index in the sorted listing, line, item index), never the
order in which rows happen to arrive, so the output does not depend on how the work was spread."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

CANDIDATE, REJECT, STATS = "candidate", "reject", "stats"
ORDER_KEY = ("file_idx", "line", "item")
TEXT_RANK_SHIFT = 40  # text_rank = corpus file index << 40 | record number: the corpus's own order key

PREP_SCHEMA = pa.schema([
    pa.field("kind", pa.string()),
    pa.field("query_id", pa.string()),
    pa.field("query", pa.string()),  # raw: prepared parts feed the reranker; redaction happens on the way out
    pa.field("doc_id", pa.string()),
    pa.field("source", pa.string()),  # "log" or "retrieved"
    pa.field("orig_rank", pa.int64()),
    pa.field("orig_score", pa.float64()),
    pa.field("label", pa.float64()),
    pa.field("file_idx", pa.int32()),
    pa.field("line", pa.int64()),
    pa.field("item", pa.int32()),
    pa.field("needs_retrieval", pa.bool_()),  # a query logged without candidates, with retrieval on
    pa.field("text", pa.string()),
    pa.field("text_rank", pa.int64()),
    pa.field("reason", pa.string()),
    pa.field("stage", pa.string()),
    pa.field("detail", pa.string()),
    pa.field("original_row", pa.string()),
    pa.field("stats", pa.string()),
])

# What a prepared part holds: whole queries, their candidates in order key order, texts attached.
PREPARED_SCHEMA = pa.schema([
    pa.field("query_id", pa.string(), nullable=False),
    pa.field("query", pa.string(), nullable=False),
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("orig_rank", pa.int64()),
    pa.field("orig_score", pa.float64()),
    pa.field("label", pa.float64()),
])

JOIN_RIGHT_COLUMNS = ("text", "text_rank")  # what the corpus side of the join brings


def conform(table: pa.Table) -> pa.Table:
    """`table` with exactly PREP_SCHEMA's columns, in order; missing ones null (e.g. after a join)."""
    n = table.num_rows
    arrays = [table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(n, f.type)
              for f in PREP_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=PREP_SCHEMA)


def rows_table(rows: list[Mapping[str, Any]]) -> pa.Table:
    """PREP_SCHEMA rows from dicts (missing keys null)."""
    if not rows:
        return PREP_SCHEMA.empty_table()
    return pa.Table.from_pylist([{f.name: r.get(f.name) for f in PREP_SCHEMA} for r in rows], schema=PREP_SCHEMA)


def reject_row(reason: str, stage: str, detail: str, *, query_id: str | None = None, doc_id: str | None = None,
               file_idx: int | None = None, line: int | None = None, item: int | None = None,
               original_row: str | None = None) -> dict[str, Any]:
    return {"kind": REJECT, "query_id": query_id, "doc_id": doc_id, "file_idx": file_idx, "line": line, "item": item,
            "reason": reason, "stage": stage, "detail": detail, "original_row": original_row}


def stats_row(counts: Mapping[str, int]) -> dict[str, Any]:
    return {"kind": STATS, "stats": json.dumps({k: int(v) for k, v in counts.items() if v})}


def sum_stats(values: list[str | None]) -> dict[str, int]:
    """The counts of many stats rows, added up."""
    total: dict[str, int] = {}
    for value in values:
        for k, v in json.loads(value or "{}").items():
            total[k] = total.get(k, 0) + int(v)
    return total
