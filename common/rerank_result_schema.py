"""The result contract of `qbatch rerank`: the columns of every result table, whatever its format.
Shared by the scoring workers (pipeline/) that write the rows and the table writers (connectors/)."""

from __future__ import annotations

import pyarrow as pa

RERANK_SCHEMA = pa.schema([
    pa.field("query_id", pa.string(), nullable=False),
    pa.field("query", pa.string(), nullable=False),  # an HMAC-SHA256 hex digest with output.redact_queries
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),  # "log" or "retrieved"
    pa.field("orig_rank", pa.int64()),
    pa.field("orig_score", pa.float64()),
    pa.field("rerank_score", pa.float32(), nullable=False),
    pa.field("new_rank", pa.int32(), nullable=False),
    pa.field("model", pa.string(), nullable=False),
    pa.field("instruction_sha", pa.string(), nullable=False),
    pa.field("run_id", pa.string(), nullable=False),
])
