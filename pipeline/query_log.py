"""Query-log rows -> per-query candidate groups. Pure functions over Arrow tables; no I/O.

Step 1, `parse_log_records`: raw records (connectors/corpus_file_reader.py's schema) of a *long* log
(one row per (query, candidate)) or a *nested* log (one row per query with a candidates list) become
flat CANDIDATE_SCHEMA rows. A row with no doc id (long) or an empty/missing list (nested) is a query
logged without candidates: one row with a null doc_id. Bad rows become reject dicts, never errors.

Step 2, `group_candidates`: the rows of some complete queries (the driver hash-partitions by
query_id, so one bucket holds every row of its queries) become QueryGroups in read order, keeping the
first of duplicate (query_id, doc_id) pairs and at most `max_per_query` candidates. A query's text is
the one on its first row; rows that repeat its query_id with another text still join that query.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
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
    pa.field("seq", pa.int64(), nullable=False),  # read order, so "keep the first" is deterministic
    pa.field("file", pa.string()),
    pa.field("line", pa.int64()),
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


@dataclass
class Candidate:
    doc_id: str
    orig_rank: int | None
    orig_score: float | None
    label: float | None
    file: str | None = None
    line: int | None = None
    source: str = "log"
    text: str | None = None


@dataclass
class QueryGroup:
    query_id: str
    query: str
    candidates: list[Candidate] = field(default_factory=list)


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
           line: int | None = None, original_row: str | None = None) -> dict[str, Any]:
    """A dead-letter row (connectors/dead_letter_writer.py's columns)."""
    return {"doc_id": doc_id, "reason": reason, "stage": stage, "file": file, "line": line,
            "original_row": original_row, "detail": detail}


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


def parse_log_records(raw: pa.Table, cols: LogColumns, shape: str, first_seq: int,
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
        for item in (items or [None]) if shape == "nested" else [obj]:
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
                rejects.append(reject(r.reason, "parse", r.detail,
                                      original_row=row, **where))
                continue
            doc_id, rank, score, label = fields
            out.append({**base, "doc_id": doc_id, "orig_rank": rank, "orig_score": score, "label": label,
                        "seq": first_seq + len(out)})
    return pa.Table.from_pylist(out, schema=CANDIDATE_SCHEMA), rejects, read


def group_candidates(rows: pa.Table, max_per_query: int,
                     redactor: QueryRedactor) -> tuple[list[QueryGroup], list[dict[str, Any]]]:
    """Complete queries' rows -> groups in first-seen order, plus duplicate / overflow rejects."""
    rows = rows.sort_by([("seq", "ascending")])
    groups: dict[str, QueryGroup] = {}
    seen: dict[str, set[str]] = {}
    rejects: list[dict[str, Any]] = []
    for r in rows.to_pylist():
        group = groups.get(r["query_id"])
        if group is None:
            group = groups[r["query_id"]] = QueryGroup(r["query_id"], r["query"])
            seen[r["query_id"]] = set()
        doc_id = r["doc_id"]
        if doc_id is None:
            continue
        reason = None
        if doc_id in seen[r["query_id"]]:
            reason, detail = "duplicate_candidate", "an earlier row of this query has the same doc_id; kept that one"
        elif len(group.candidates) >= max_per_query:
            reason, detail = "too_many_candidates", f"the query already has candidates.max_per_query={max_per_query}"
        if reason is not None:
            original = {k: r[k] for k in ("query_id", "query", "doc_id", "orig_rank", "orig_score", "label")}
            rejects.append(reject(reason, "group", detail, doc_id=doc_id, file=r["file"], line=r["line"],
                                  original_row=redactor.row_json(original, "query")))
            continue
        seen[r["query_id"]].add(doc_id)
        group.candidates.append(Candidate(doc_id, r["orig_rank"], r["orig_score"], r["label"], r["file"], r["line"]))
    return list(groups.values()), rejects


GROUP_SCHEMA = pa.schema([
    pa.field("query_id", pa.string()), pa.field("query", pa.string()),
    pa.field("doc_ids", pa.list_(pa.string())), pa.field("texts", pa.list_(pa.string())),
    pa.field("sources", pa.list_(pa.string())), pa.field("orig_ranks", pa.list_(pa.int64())),
    pa.field("orig_scores", pa.list_(pa.float64())), pa.field("labels", pa.list_(pa.float64())),
])


def groups_to_table(groups: list[QueryGroup]) -> pa.Table:
    """One row per query, candidates as parallel lists: the reranker stage's input (texts must be set)."""
    cols: dict[str, list] = {name: [] for name in GROUP_SCHEMA.names}
    for g in groups:
        cols["query_id"].append(g.query_id)
        cols["query"].append(g.query)
        cols["doc_ids"].append([c.doc_id for c in g.candidates])
        cols["texts"].append([c.text for c in g.candidates])
        cols["sources"].append([c.source for c in g.candidates])
        cols["orig_ranks"].append([c.orig_rank for c in g.candidates])
        cols["orig_scores"].append([c.orig_score for c in g.candidates])
        cols["labels"].append([c.label for c in g.candidates])
    return pa.table(cols, schema=GROUP_SCHEMA)
