"""Query-log records -> flat candidate rows. Pure functions over Arrow tables; no I/O.

`parse_log_records`: raw records (connectors/corpus_file_reader.py's schema) of a *long* log (one row
per (query, candidate)) or a *nested* log (one row per query with a candidates list) become candidate
rows with their order key (file, line, item index in the nested list). A row with no doc id (long) or
an empty/missing list (nested) is a query logged without candidates: one row with a null doc_id. Bad
rows become reject dicts, never errors. `parse_stage` runs it on a Ray Data block and hands on
PREP_SCHEMA rows (pipeline/rerank_rows.py): candidates, rejects and one stats row.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from qbatch.pipeline.query_redaction import QueryRedactor
from qbatch.common.row_validation import _Reject, normalise_id

CANDIDATE_SCHEMA = pa.schema([
    pa.field("query_id", pa.string(), nullable=False),
    pa.field("query", pa.string(), nullable=False),
    pa.field("doc_id", pa.string()),  # null: the query was logged without candidates
    pa.field("orig_rank", pa.int64()),
    pa.field("orig_score", pa.float64()),
    pa.field("label", pa.float64()),
    pa.field("file", pa.string()),
    pa.field("line", pa.int64()),
    pa.field("item", pa.int32()),  # index in a nested candidates list (0 in a long log): the order key's last part
])


@dataclass(frozen=True)
class LogColumns:
    """Which log fields mean what (built from QueryLogColumns.model_dump())."""

    query_id: str = "query_id"
    query: str = "query"
    doc_id: str = "doc_id"
    rank: str = "rank"
    score: str = "score"
    label: str = "label"
    candidates: str = "candidates"


class _LogReject(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _id(value: Any, what: str) -> str:
    try:
        return normalise_id(value)
    except _Reject as r:  # missing_id -> missing_query_id, invalid_id -> invalid_doc_id, ...
        return_reason = r.reason.value.replace("_id", f"_{what}") if r.reason.value.endswith("_id") else r.reason.value
        raise _LogReject(return_reason, f"{what}: {r.detail}") from None


def reject(reason: str, stage: str, detail: str, *, doc_id: str | None = None, file: str | None = None,
           line: int | None = None, original_row: str | None = None, item: int | None = None) -> dict[str, Any]:
    """A dead-letter row (connectors/dead_letter_writer.py's columns, plus the item for the order key)."""
    return {"doc_id": doc_id, "reason": reason, "stage": stage, "file": file, "line": line,
            "original_row": original_row, "detail": detail, "item": item}


def _number(value: Any, name: str, integer: bool) -> int | float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _LogReject("invalid_field", f"{name} must be a finite number, got {value!r}")
    if integer:
        if float(value) != int(value):
            raise _LogReject("invalid_field", f"{name} must be an integer, got {value!r}")
        return int(value)
    return float(value)


def _candidate_fields(item: Mapping[str, Any], cols: LogColumns) -> tuple[str | None, int | None, float | None, float | None]:
    raw_id = item.get(cols.doc_id)
    doc_id = None if raw_id is None else _id(raw_id, "doc_id")
    return (doc_id, _number(item.get(cols.rank), cols.rank, True), _number(item.get(cols.score), cols.score, False),
            _number(item.get(cols.label), cols.label, False))


def _query_fields(obj: Mapping[str, Any], cols: LogColumns) -> tuple[str, str]:
    query_id = _id(obj.get(cols.query_id), "query_id")
    query = obj.get(cols.query)
    if query is not None and not isinstance(query, str):
        raise _LogReject("invalid_query", f"{cols.query} must be text, got {type(query).__name__}")
    if query is None or not query.strip():
        raise _LogReject("empty_query", f"{cols.query} is empty or missing")
    try:
        query.encode("utf-8")
    except UnicodeEncodeError:
        raise _LogReject("bad_utf8", f"{cols.query} holds an unpaired surrogate") from None
    return query_id, query


def parse_log_records(raw: pa.Table, cols: LogColumns, shape: str,
                      redactor: QueryRedactor) -> tuple[pa.Table, list[dict[str, Any]], int]:
    """(candidate rows, reject rows, log rows read). End-of-file markers must be filtered out first."""
    out: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    read = 0
    files, lines = raw.column("_file").to_pylist(), raw.column("_line").to_pylist()
    for file, line, record, raw_text, error in zip(files, lines, raw.column("_record").to_pylist(),
                                                   raw.column("_raw").to_pylist(), raw.column("_read_error").to_pylist()):
        where = {"file": file, "line": line}
        obj = json.loads(record) if error is None and record is not None else None
        if not isinstance(obj, dict):
            read += 1
            rejects.append(reject(error or "broken_json", "read", "unreadable log line",
                                  original_row=redactor.raw_line(raw_text or record), **where))
            continue
        items = obj.get(cols.candidates) if shape == "nested" else None
        n_items = len(items) if isinstance(items, list) and items else 1
        read += n_items
        try:
            query_id, query = _query_fields(obj, cols)
            if shape == "nested" and items is not None and not isinstance(items, list):
                raise _LogReject("invalid_field", f"{cols.candidates} must be a list")
        except _LogReject as r:
            doc_ids = [None] * n_items if shape == "nested" else [obj.get(cols.doc_id)]
            row = redactor.row_json(obj, cols.query)
            rejects += [reject(r.reason, "parse", r.detail,
                               doc_id=None if d is None else str(d), original_row=row, **where) for d in doc_ids]
            continue
        base = {"query_id": query_id, "query": query, "file": file, "line": line}
        for index, item in enumerate((items or [None]) if shape == "nested" else [obj]):
            try:
                if item is None:
                    fields = (None, None, None, None)
                elif not isinstance(item, dict):
                    raise _LogReject("invalid_candidate", f"a candidate must be an object, got {type(item).__name__}")
                else:
                    fields = _candidate_fields(item, cols)
            except _LogReject as r:
                row = redactor.row_json(obj if shape == "long" else
                                        {cols.query_id: query_id, cols.query: query, "candidate": item}, cols.query)
                rejects.append(reject(r.reason, "parse", r.detail, original_row=row, item=index, **where))
                continue
            doc_id, rank, score, label = fields
            out.append({**base, "doc_id": doc_id, "orig_rank": rank, "orig_score": score, "label": label,
                        "item": index})
    return pa.Table.from_pylist(out, schema=CANDIDATE_SCHEMA), rejects, read


def parse_stage(raw: pa.Table, cols: LogColumns, shape: str, file_index: dict[str, int],
                redactor: QueryRedactor) -> pa.Table:
    """One Ray Data block of raw log records -> PREP_SCHEMA rows: candidates with their order key,
    rejects (already redacted) and one stats row (log rows, candidates read)."""
    import pyarrow.compute as pc

    from qbatch.common.end_of_file import END_OF_FILE
    from qbatch.pipeline.rerank_rows import CANDIDATE, conform, rows_table, stats_row

    raw = raw.filter(pc.invert(pc.fill_null(pc.equal(raw.column("_read_error"), END_OF_FILE), False)))
    rows, rejects, read = parse_log_records(raw, cols, shape, redactor)
    n = rows.num_rows
    files = pa.array([file_index[f] for f in rows.column("file").to_pylist()], pa.int32())
    candidates = conform(rows.drop_columns(["file"]).append_column("file_idx", files).append_column(
        "kind", pa.array([CANDIDATE] * n, pa.string())).append_column("source", pa.array(["log"] * n, pa.string())))
    bad = rows_table([{"kind": "reject", **{k: v for k, v in r.items() if k != "file"},
                       "file_idx": file_index.get(r["file"])} for r in rejects])
    stats = rows_table([stats_row({"log_rows": raw.num_rows, "candidates_read": read})])
    return pa.concat_tables([candidates, bad, stats])
