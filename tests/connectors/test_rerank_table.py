"""Result partitions: staged, committed with _SUCCESS, replaced on rerun, refused when uncommitted."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from qbatch.common.errors import SourceError
from qbatch.connectors.rerank_table import RERANK_SCHEMA, RerankTableWriter, read_rerank_partition, read_success

DAY = dt.date(2026, 11, 27)


def rows(n: int, run_id: str) -> pa.Table:
    return pa.table({"query_id": [f"q{i}" for i in range(n)], "query": ["q"] * n, "doc_id": [f"d{i}" for i in range(n)],
                     "source": ["log"] * n, "orig_rank": [1] * n, "orig_score": [None] * n,
                     "rerank_score": [0.5] * n, "new_rank": [1] * n, "model": ["m"] * n,
                     "instruction_sha": ["s"] * n, "run_id": [run_id] * n})


def test_commit_replaces_the_partition_and_staging_is_invisible(tmp_path):
    uri = str(tmp_path / "table")
    first = RerankTableWriter(uri, DAY, "r1")
    first.write(rows(3, "r1"))
    first.write(rows(2, "r1"))
    with pytest.raises(SourceError, match="not committed"):
        read_rerank_partition(uri, DAY)  # staged parts are not a partition
    first.commit()
    assert read_rerank_partition(uri, DAY).num_rows == 5
    assert read_success(uri, DAY)["rows"] == 5
    second = RerankTableWriter(uri, DAY, "r2")
    second.write(rows(4, "r2"))
    second.commit()
    table = read_rerank_partition(uri, DAY)
    assert table.schema == RERANK_SCHEMA
    assert table.num_rows == 4 and set(table.column("run_id").to_pylist()) == {"r2"}
    assert not list((tmp_path / "table" / "_staging").rglob("*.parquet"))


def test_a_crash_between_delete_and_marker_leaves_an_unreadable_partition(tmp_path):
    uri = str(tmp_path / "table")
    w = RerankTableWriter(uri, DAY, "r1")
    w.write(rows(2, "r1"))
    w.commit()
    (tmp_path / "table" / "run_date=2026-11-27" / "_SUCCESS").unlink()  # as if the next commit died midway
    with pytest.raises(SourceError):
        read_rerank_partition(uri, DAY)
