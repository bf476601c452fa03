"""The one acknowledgement schema of the rerank job: all that reaches the driver from its workers.

Each row acknowledges one file a worker wrote (a prepared part, a result part, or a dead-letter part and
one of its reasons) or carries a worker's counts (`part` null). Columns are scalars only: counts,
metric partials (pipeline/ranking_metrics.partial_columns), unit ids, part names and reasons; never a
list, a binary column, a query, a document text or a score. Part names are relative to the run's
staging folder, so an acknowledgement stays small whatever the storage URI."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from qbatch.pipeline.ranking_metrics import partial_columns

PREPARED, RESULT, DEAD_LETTER = "prepared", "result", "dead_letter"
COUNT_COLUMNS = ("queries", "log_rows", "candidates_read", "queries_retrieved", "candidates_retrieved", "search_requests",
                 "lookup_requests", "truncated", "non_finite")

ACK_SCHEMA = pa.schema([
    pa.field("phase", pa.string()),  # "prepare" or "score"
    pa.field("node_id", pa.string()),
    pa.field("pid", pa.int64()),
    pa.field("unit", pa.string()),  # the prepared part a row belongs to: the unit of scoring and resume
    pa.field("part", pa.string()),  # the file acknowledged, relative to the staging folder; null: counts only
    pa.field("part_kind", pa.string()),  # prepared | result | dead_letter
    pa.field("reason", pa.string()),  # dead_letter rows: the reason `rows` counts
    pa.field("rows", pa.int64()),  # pairs (prepared, result) or dead-letter rows (of `reason`)
    pa.field("pairs", pa.int64()),  # score rows: the unit's pairs, scored or not
    pa.field("seconds", pa.float64()),  # the worker's time in this call
    pa.field("precision", pa.string()),
    *[pa.field(name, pa.int64()) for name in COUNT_COLUMNS],
    *[pa.field(f"m_{name}", pa.int64() if kind == "int" else pa.float64()) for name, kind in partial_columns()],
])


def worker_identity() -> dict[str, Any]:
    """The node and process of the worker writing an acknowledgement (for placement checks)."""
    node_id = None
    try:
        import ray

        if ray.is_initialized():
            node_id = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - identity is for the books only
        node_id = None
    return {"node_id": node_id, "pid": os.getpid()}


def ack_table(rows: list[Mapping[str, Any]]) -> pa.Table:
    """ACK_SCHEMA rows from dicts; metric partials come as `metrics` (RunMetrics.to_row()) and land in m_*."""
    out = []
    for row in rows:
        flat = {k: v for k, v in row.items() if k != "metrics"}
        for name, value in (row.get("metrics") or {}).items():
            flat[f"m_{name}"] = value
        out.append({f.name: flat.get(f.name) for f in ACK_SCHEMA})
    return pa.Table.from_pylist(out, schema=ACK_SCHEMA) if out else ACK_SCHEMA.empty_table()


def metrics_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """The metric partials of one acknowledgement row, as RunMetrics.merge_row takes them."""
    return {name: row.get(f"m_{name}") for name, _ in partial_columns()}
