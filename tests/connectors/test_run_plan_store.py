"""A run's persisted plan: written once, read back whole by every later attempt, on local disk and on
S3 (moto server); the listing it was made from binds later attempts, and a changed file is refused."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pytest

from qbatch.common.errors import SourceError
from qbatch.connectors.bucket_spill import BucketSpill, bucket_of
from qbatch.connectors.corpus_listing import CorpusFile
from qbatch.connectors.dead_letter_writer import read_dead_letter
from qbatch.connectors.run_plan_store import RunPlanStore, listing_record, planned_files

SCHEMA = pa.schema([("doc_id", pa.string()), ("n_chunks", pa.int32())])


def _files(*sizes: int) -> list[CorpusFile]:
    return [CorpusFile(uri=f"/data/part-{i}.jsonl", path=f"part-{i}.jsonl", size=size, format="jsonl",
                       modified_ns=1_000 + i) for i, size in enumerate(sizes)]


def _reject(line: int) -> dict:
    return {"doc_id": f"d{line}", "reason": "missing_text", "stage": "prep", "file": "/data/part-0.jsonl",
            "line": line, "original_row": '{"id": "d%d"}' % line, "detail": "empty text"}


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_committed_plan_reads_back_whole(where, tmp_path, request):
    if where == "s3":
        bucket, storage = request.getfixturevalue("s3_bucket"), request.getfixturevalue("s3_storage")
        folder = f"s3://{bucket}/out/catalog/runs/r1"
    else:
        folder, storage = str(tmp_path / "runs" / "r1"), None
    store = RunPlanStore(folder, storage)
    assert store.load() is None
    ids = [f"doc-{i}" for i in range(50)]
    with BucketSpill(SCHEMA, 8) as spill:
        spill.add(pa.table({"doc_id": ids, "n_chunks": pa.array(range(50), pa.int32())}, schema=SCHEMA))
        written = store.write_buckets("carried", spill)
    lines = store.write_line_plans("duplicates", {"/data/part-1.jsonl": [9, 3, 7]})
    with store.rejects_writer("r1") as rejects:
        rejects.write([_reject(4), _reject(5)])
    files = _files(100, 200)
    store.commit({"duplicates": 3, "duplicate_lines": lines}, files)

    saved = RunPlanStore(folder, storage).load()
    assert saved["duplicates"] == 3 and saved["duplicate_lines"] == lines
    assert planned_files(saved["files"], files, "r1") == files
    back = RunPlanStore(folder, storage).buckets("carried", SCHEMA, 8)
    for i in range(8):
        table = back.read(i)
        assert table.schema == SCHEMA
        assert sorted(table["doc_id"].to_pylist()) == sorted(d for d in ids if bucket_of(d, 8) == i)
        assert table.equals(written.read(i))
    rejected = pa.concat_tables(store.iter_rejects())
    assert rejected["line"].to_pylist() == [4, 5] and set(rejected["run_id"].to_pylist()) == {"r1"}
    # What the plan rejected stays apart from the run's own dead-letter table.
    assert read_dead_letter(f"{folder.rsplit('/runs/', 1)[0]}", "r1", storage).num_rows == 0

    store.discard()
    assert store.load() is None


def test_a_resumed_attempt_gets_the_planned_listing_and_refuses_a_changed_file():
    planned = _files(100, 200)
    saved = listing_record(planned)
    added = [*planned, *_files(0, 0, 300)[2:]]  # a file that appeared since stays for the next run
    assert planned_files(saved, added, "r1") == planned
    grown = [planned[0], dataclasses.replace(planned[1], size=250)]
    with pytest.raises(SourceError, match=r"part-1\.jsonl changed \(size 200 -> 250.*new run.*rollback"):
        planned_files(saved, grown, "r1")
    touched = [planned[0], dataclasses.replace(planned[1], modified_ns=5)]
    with pytest.raises(SourceError, match="part-1.jsonl changed"):
        planned_files(saved, touched, "r1")
    with pytest.raises(SourceError, match="part-0.jsonl is gone since run r1"):
        planned_files(saved, planned[1:], "r1")


def test_planning_again_replaces_the_parts_of_an_unfinished_plan(tmp_path):
    store = RunPlanStore(str(tmp_path / "runs" / "r1"))
    for ids in (["a", "b", "c", "d"], ["a"]):  # the second plan leaves buckets empty that the first filled
        with BucketSpill(SCHEMA, 4) as spill:
            spill.add(pa.table({"doc_id": ids, "n_chunks": pa.array([1] * len(ids), pa.int32())}, schema=SCHEMA))
            store.write_buckets("carried", spill)
    back = store.buckets("carried", SCHEMA, 4)
    assert sorted(d for i in range(4) for d in back.read(i)["doc_id"].to_pylist()) == ["a"]
    with store.rejects_writer("r1") as rejects:  # a first attempt that crashed before its marker
        rejects.write([_reject(1), _reject(2), _reject(3)])
    with store.rejects_writer("r1") as rejects:
        rejects.write([_reject(7)])
    assert pa.concat_tables(store.iter_rejects())["line"].to_pylist() == [7]
    with store.rejects_writer("r1"):  # and a plan with no rejects leaves none behind
        pass
    assert list(store.iter_rejects()) == []
