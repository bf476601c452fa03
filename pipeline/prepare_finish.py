"""The last step of the rerank job's prepare phase, one call per hash partition by query_id (whole
queries, every row of them): the per-query rules (pipeline/candidate_rules.py), candidates without a
text dead-lettered as `missing_document`, queries without candidates as `no_candidates`, then whole
queries packed into prepared parts (pipeline/part_packing.py) and written, with this partition's dead
letters, under deterministic names into the run's staging folder. What it returns is acknowledgement
rows only (pipeline/rerank_acks.py).

`staging` is the run's staging folder (connectors/rerank_staging.RerankStaging); it is handed in, so this
module never touches storage itself."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from qbatch.pipeline.candidate_rules import apply_rules, query_order, reject_frame
from qbatch.pipeline.part_packing import pack_queries
from qbatch.pipeline.query_redaction import QueryRedactor
from qbatch.pipeline.rerank_acks import DEAD_LETTER, PREPARED, ack_table, worker_identity
from qbatch.pipeline.rerank_rows import (CANDIDATE, ORDER_KEY, PREP_SCHEMA, PREPARED_SCHEMA, REJECT, STATS, conform,
                                        sum_stats)

DEAD_LETTER_COLUMNS = ("doc_id", "reason", "stage", "file", "line", "original_row", "detail")


def _of_kind(block: pa.Table, kind: str) -> pa.Table:
    return block.filter(pc.fill_null(pc.equal(block.column("kind"), kind), False))


def dead_letter_rows(rejects: pa.Table, file_uris: list[str]) -> pa.Table:
    """Reject rows (PREP_SCHEMA) -> dead-letter columns, sorted by order key, `file` from the listing."""
    rejects = rejects.sort_by([(k, "ascending", "at_end") for k in (*ORDER_KEY, "reason", "doc_id")])
    files = pa.array(file_uris, pa.string()).take(rejects.column("file_idx")) if rejects.num_rows else \
        pa.array([], pa.string())
    return pa.table({"doc_id": rejects.column("doc_id"), "reason": rejects.column("reason"),
                     "stage": rejects.column("stage"), "file": files, "line": rejects.column("line"),
                     "original_row": rejects.column("original_row"), "detail": rejects.column("detail")})


def content_name(prefix: str, table: pa.Table, columns: tuple[str, ...]) -> str:
    """A name that depends only on the rows: a retry writes the same file, another partition another."""
    digest = hashlib.sha1()
    for col in columns:
        digest.update(repr(table.column(col).to_pylist()).encode("utf-8", "surrogatepass"))
    return f"{prefix}-{digest.hexdigest()[:24]}"


def write_dead_letters(staging: Any, name: str, rows: pa.Table, phase: str, identity: dict,
                       unit: str | None = None) -> list[dict]:
    """Write one dead-letter part `dead_letter/{name}.parquet` (if there are rows); one ack per reason."""
    if rows.num_rows == 0:
        return []
    part = f"dead_letter/{name}.parquet"
    staging.write_dead_letters(part, rows)
    reasons, counts = np.unique(np.asarray(rows.column("reason").to_pylist(), dtype=object), return_counts=True)
    return [{"phase": phase, **identity, "unit": unit, "part": part, "part_kind": DEAD_LETTER, "reason": str(r),
             "rows": int(c)} for r, c in zip(reasons, counts)]


def finish_partition(block: pa.Table, *, staging: Any, max_per_query: int, pairs_per_part: int,
                     redactor: QueryRedactor, file_uris: list[str], retrieval: bool, missing_where: str) -> pa.Table:
    """One whole partition's rows (PREP_SCHEMA) -> prepared parts and dead letters written; acks returned."""
    started = time.perf_counter()
    identity = worker_identity()
    block = conform(block)
    counts = sum_stats(_of_kind(block, STATS).column("stats").to_pylist())
    kept, rule_rejects = apply_rules(_of_kind(block, CANDIDATE), max_per_query, redactor, retrieval=False)
    df = kept.to_pandas()
    queries = int(df["query_id"].nunique()) if len(df) else 0
    empty, have = df[df["doc_id"].isna()], df[df["doc_id"].notna()]
    why = "retrieval found nothing" if retrieval else \
        "the query was logged without candidates and retrieval is off (candidates.retrieve_top_k = 0)"
    no_candidates = reject_frame(empty.assign(doc_id=None), "no_candidates", "group", why, redactor)
    if len(empty):
        no_candidates["original_row"] = [redactor.row_json({"query_id": q, "query": t}, "query")
                                         for q, t in zip(empty["query_id"], empty["query"])]
    missing_rows = have[have["text"].isna()]
    missing = reject_frame(missing_rows, "missing_document", "lookup",
                           [f"no text for doc_id {d!r} in {missing_where}" for d in missing_rows["doc_id"]],
                           redactor, extra=("source",))
    good = query_order(have[have["text"].notna()])
    acks: list[dict] = []
    for unit, part in pack_queries(pa.Table.from_pandas(good[PREPARED_SCHEMA.names], schema=PREPARED_SCHEMA,
                                                        preserve_index=False), pairs_per_part):
        staging.write_table(f"prepared/{unit}.parquet", part)
        acks.append({"phase": "prepare", **identity, "unit": unit, "part": f"prepared/{unit}.parquet",
                     "part_kind": PREPARED, "rows": part.num_rows,
                     "queries": len(pc.unique(part.column("query_id")))})
    frames = [f for f in (no_candidates, missing) if len(f)]
    generated = pa.Table.from_pandas(pd.concat(frames), preserve_index=False) if frames else None
    rejects = pa.concat_tables([_of_kind(block, REJECT), rule_rejects,
                                *([conform(generated)] if generated is not None else [])])
    dead = dead_letter_rows(rejects, file_uris)
    acks += write_dead_letters(staging, content_name("prep", dead, ("reason", "file", "line", "doc_id")), dead,
                               "prepare", identity)
    acks.append({"phase": "prepare", **identity, "queries": queries, "seconds": time.perf_counter() - started,
                 **{k: counts.get(k, 0) for k in ("log_rows", "candidates_read", "queries_retrieved",
                                                  "candidates_retrieved", "search_requests", "lookup_requests")}})
    return ack_table(acks)

