"""Result partitions: published from acknowledged staged parts only, committed with a _SUCCESS marker
that lists them, replaced on rerun, refused when uncommitted, and finished by a repeated publish."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pytest

from qbatch.common.errors import SourceError
from qbatch.connectors.rerank_staging import RerankStaging, staging_uri
from qbatch.common.rerank_result_schema import RERANK_SCHEMA
from qbatch.connectors.rerank_table import publish_dead_letters, publish_partition, read_rerank_partition, read_success

DAY = dt.date(2026, 11, 27)


def rows(n: int, run_id: str) -> pa.Table:
    return pa.table({"query_id": [f"q{i}" for i in range(n)], "query": ["q"] * n, "doc_id": [f"d{i}" for i in range(n)],
                     "source": ["log"] * n, "orig_rank": [1] * n, "orig_score": [None] * n,
                     "rerank_score": [0.5] * n, "new_rank": [1] * n, "model": ["m"] * n,
                     "instruction_sha": ["s"] * n, "run_id": [run_id] * n}, schema=RERANK_SCHEMA)


def staged(uri: str, run_id: str, sizes: list[int], storage=None) -> tuple[RerankStaging, list[str]]:
    staging = RerankStaging(staging_uri(uri, DAY.isoformat(), run_id), run_id, storage)
    parts = []
    for i, n in enumerate(sizes):
        parts.append(f"results/prep-{run_id}-{i}.parquet")
        staging.write_table(parts[-1], rows(n, run_id))
    return staging, parts


def test_publish_replaces_the_day_with_exactly_the_acknowledged_parts(tmp_path):
    uri = str(tmp_path / "table")
    staging, parts = staged(uri, "r1", [3, 2, 4])
    with pytest.raises(SourceError, match="not committed"):
        read_rerank_partition(uri, DAY)  # staged parts are not a partition
    publish_partition(uri, DAY, "r1", "t1", staging, parts[:2], 5)  # the third was never acknowledged
    assert read_rerank_partition(uri, DAY).num_rows == 5
    assert read_success(uri, DAY)["rows"] == 5 and len(read_success(uri, DAY)["parts"]) == 2
    staging2, parts2 = staged(uri, "r2", [4])
    publish_partition(uri, DAY, "r2", "t2", staging2, parts2, 4)
    table = read_rerank_partition(uri, DAY)
    assert table.schema == RERANK_SCHEMA
    assert table.num_rows == 4 and set(table.column("run_id").to_pylist()) == {"r2"}
    assert sorted(p.name for p in (tmp_path / "table" / "run_date=2026-11-27").iterdir()) == [
        "_SUCCESS", "part-prep-r2-0.parquet"]


def test_a_repeated_publish_finishes_or_keeps_a_commit(tmp_path):
    uri = str(tmp_path / "table")
    staging, parts = staged(uri, "r1", [2, 3])
    publish_partition(uri, DAY, "r1", "t1", staging, parts, 5)
    before = read_success(uri, DAY)
    publish_partition(uri, DAY, "r1", "t1", staging, parts, 5)  # the run was killed after its commit
    assert read_success(uri, DAY) == before and read_rerank_partition(uri, DAY).num_rows == 5
    # Half a commit: the parts moved into the publish folder, no marker yet; the next attempt finishes it.
    staging2, parts2 = staged(uri, "r2", [1, 1])
    publish_folder = tmp_path / "table" / "_staging" / "run_date=2026-11-27" / "r2" / "publish"
    publish_folder.mkdir(parents=True)
    for p in parts2:
        (tmp_path / "table" / "_staging" / "run_date=2026-11-27" / "r2" / p).rename(
            publish_folder / ("part-" + p.rsplit("/", 1)[-1]))
    assert read_rerank_partition(uri, DAY).num_rows == 5  # the old day still serves
    publish_partition(uri, DAY, "r2", "t2", staging2, parts2, 2)
    assert read_rerank_partition(uri, DAY).num_rows == 2
    with pytest.raises(RuntimeError, match="missing"):
        publish_partition(uri, DAY, "r3", "t3", RerankStaging(staging_uri(uri, DAY.isoformat(), "r3"), "r3"),
                          ["results/prep-none.parquet"], 1)


def test_publish_on_s3_deletes_only_the_old_marked_parts(s3_bucket, s3_storage):
    uri = f"s3://{s3_bucket}/rerank-table"
    staging, parts = staged(uri, "r1", [2, 2], s3_storage)
    publish_partition(uri, DAY, "r1", "t1", staging, parts, 4, s3_storage)
    staging2, parts2 = staged(uri, "r2", [3], s3_storage)
    publish_partition(uri, DAY, "r2", "t2", staging2, parts2, 3, s3_storage)
    table = read_rerank_partition(uri, DAY, s3_storage)
    assert table.num_rows == 3 and set(table.column("run_id").to_pylist()) == {"r2"}


def test_dead_letters_are_published_beside_the_day(tmp_path):
    uri = str(tmp_path / "table")
    staging = RerankStaging(staging_uri(uri, DAY.isoformat(), "r1"), "r1")
    staging.write_dead_letters("dead_letter/prep-a.parquet", pa.table({
        "doc_id": ["d"], "reason": ["missing_document"], "stage": ["lookup"], "file": ["f"], "line": [3],
        "original_row": ["{}"], "detail": ["x"]}))
    where = publish_dead_letters(uri, DAY, "r1", "t1", staging, ["dead_letter/prep-a.parquet"])
    assert json.loads((tmp_path / "table" / "_dead_letter" / "run_date=2026-11-27" / "_PARTS.json").read_text())[
        "parts"] == ["part-prep-a.parquet"]
    assert where.endswith("_dead_letter/run_date=2026-11-27")
