"""The per-query rules of the rerank job, over the rows of whole queries (a hash partition by query_id),
in order key order (pipeline/rerank_rows.py), whatever order the rows arrived in:

1. a log row that met several corpus records of its doc id (the corpus join) keeps the first record's
   text, in the corpus's own order (`text_rank`), as the index job does;
2. a query's text is the one on its first row; rows that repeat its query_id with another text join it;
3. of duplicate (query_id, doc_id) rows the first is kept, the rest are `duplicate_candidate`;
4. beyond `max_per_query` candidates a query's rows are `too_many_candidates`;
5. a query with no candidate left was logged without any: it needs retrieval (when on) or is
   `no_candidates`.

`apply_rules` returns the kept rows, one flagged row per query without candidates, and reject rows; it
is idempotent, so running it again after retrieval or a join changes nothing it already decided."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from qbatch.pipeline.query_redaction import QueryRedactor
from qbatch.pipeline.rerank_rows import CANDIDATE, ORDER_KEY, PREP_SCHEMA, REJECT, conform

_ORIGINAL_COLUMNS = ("query_id", "query", "doc_id", "orig_rank", "orig_score", "label")


def sort_by_order_key(df: pd.DataFrame) -> pd.DataFrame:
    """Rows in order key order; ties (a log row joined to several corpus records) by text_rank, nulls last."""
    keys = [*ORDER_KEY, "text_rank"]
    return df.sort_values(keys, kind="stable", na_position="last").reset_index(drop=True)


def original_rows(df: pd.DataFrame, redactor: QueryRedactor, extra: Sequence[str] = ()) -> list[str]:
    """Each row's dead-letter `original_row`: its log fields as JSON, the query redacted."""
    cols = [*_ORIGINAL_COLUMNS, *extra]
    records = df[cols].astype(object).where(df[cols].notna(), None).to_dict("records")
    return [redactor.row_json(r, "query") for r in records]


def reject_frame(df: pd.DataFrame, reason: str, stage: str, detail: Sequence[str] | str,
                 redactor: QueryRedactor, extra: Sequence[str] = ()) -> pd.DataFrame:
    """`df`'s rows as reject rows with `reason`."""
    out = df[["query_id", "doc_id", *ORDER_KEY]].copy()
    out["kind"], out["reason"], out["stage"] = REJECT, reason, stage
    out["detail"] = list(detail) if not isinstance(detail, str) else detail
    out["original_row"] = original_rows(df, redactor, extra) if len(df) else []
    return out


def apply_rules(rows: pa.Table, max_per_query: int, redactor: QueryRedactor,
                retrieval: bool) -> tuple[pa.Table, pa.Table]:
    """Candidate rows of whole queries -> (kept rows plus one flagged row per query without candidates,
    reject rows). Flagged rows keep `doc_id` null and carry `needs_retrieval = retrieval`."""
    df = rows.to_pandas(types_mapper=None)
    if df.empty:
        return PREP_SCHEMA.empty_table(), PREP_SCHEMA.empty_table()
    df = sort_by_order_key(df)
    df = df.drop_duplicates(list(ORDER_KEY), keep="first")  # rule 1: the corpus's first record of the id
    first = df.groupby("query_id", sort=False).head(1).set_index("query_id")["query"]
    df["query"] = df["query_id"].map(first)  # rule 2
    logged = df[df["doc_id"].notna()]
    dup = logged.duplicated(["query_id", "doc_id"], keep="first")  # rule 3
    unique = logged[~dup]
    over = unique.groupby("query_id", sort=False).cumcount() >= max_per_query  # rule 4
    kept = unique[~over]
    rejects = [reject_frame(logged[dup], "duplicate_candidate", "group",
                            "an earlier row of this query has the same doc_id; kept that one", redactor),
               reject_frame(unique[over], "too_many_candidates", "group",
                            f"the query already has candidates.max_per_query={max_per_query}", redactor)]
    empty = df[~df["query_id"].isin(kept["query_id"])].groupby("query_id", sort=False).head(1).copy()
    empty["doc_id"] = None
    empty["needs_retrieval"] = bool(retrieval)
    empty["text"] = None
    return (conform(pa.Table.from_pandas(pd.concat([kept, empty]), preserve_index=False)),
            conform(pa.Table.from_pandas(pd.concat(rejects), preserve_index=False)))


def query_order(kept: pd.DataFrame) -> pd.DataFrame:
    """Kept rows with whole queries in the order of their first rows, candidates in order key order."""
    if kept.empty:
        return kept
    df = sort_by_order_key(kept)
    rank = pd.Series(np.arange(len(df)), index=df.index).groupby(df["query_id"], sort=False).transform("min")
    return df.assign(_q=rank.values).sort_values(["_q", *ORDER_KEY], kind="stable").drop(columns="_q").reset_index(
        drop=True)


def rules_before_retrieval(block: pa.Table, max_per_query: int, redactor: QueryRedactor) -> pa.Table:
    """A whole partition's rows with the rules applied and queries without candidates flagged for
    retrieval; rejects and stats rows pass through (Ray Data `map_batches` over a keyed repartition)."""
    import pyarrow.compute as pc

    block = conform(block)
    candidate = pc.fill_null(pc.equal(block.column("kind"), CANDIDATE), False)
    kept, rejects = apply_rules(block.filter(candidate), max_per_query, redactor, retrieval=True)
    return pa.concat_tables([kept, rejects, block.filter(pc.invert(candidate))])


def select_retrieval(block: pa.Table, flagged: bool) -> pa.Table:
    """The rows that need retrieval (`flagged`), or all the others."""
    import pyarrow.compute as pc

    needs = pc.fill_null(block.column("needs_retrieval"), False)
    return block.filter(needs if flagged else pc.invert(needs))
