"""DeadLetterWriter: rolling Parquet parts, counts by reason, PrepStage rows as input, S3 output."""

from __future__ import annotations

import pyarrow as pa
import pytest

from qbatch.connectors.dead_letter_writer import DEAD_LETTER_SCHEMA, DeadLetterWriter, dead_letter_uri, read_dead_letter


def _reject(i: int, reason: str) -> dict:
    return {"doc_id": str(i), "reason": reason, "stage": "prep", "file": "f.jsonl", "line": i,
            "original_row": f'{{"id": {i}}}', "detail": "why"}


def test_round_trip_with_rolling_parts(tmp_path):
    writer = DeadLetterWriter(str(tmp_path), "run-1", rows_per_part=4)
    for i in range(10):
        writer.write([_reject(i, "empty_text" if i % 3 else "missing_id")])
    writer.close()
    assert [p.rsplit("/", 1)[-1] for p in writer.parts] == ["part-00000.parquet", "part-00001.parquet",
                                                           "part-00002.parquet"]
    assert writer.count == 10
    assert writer.counts_by_reason == {"empty_text": 6, "missing_id": 4}
    table = read_dead_letter(str(tmp_path), "run-1")
    assert table.schema.equals(DEAD_LETTER_SCHEMA)
    assert table.column("line").to_pylist() == list(range(10))
    assert set(table.column("run_id").to_pylist()) == {"run-1"}
    assert (tmp_path / "runs" / "run-1" / "dead_letter" / "part-00002.parquet").exists()


def test_accepts_prep_stage_columns_and_fills_missing_ones(tmp_path):
    prep_rows = pa.table({
        "doc_id": [None], "reject_reason": ["broken_json"], "reject_stage": ["read"], "_file": ["x.jsonl"],
        "_line": pa.array([3], pa.int64()), "original_row": ["{oops"], "text": [None],
        "chunk": pa.array([0], pa.int32()),
    })
    with DeadLetterWriter(str(tmp_path), "r", rows_per_part=100) as writer:
        assert writer.write(prep_rows) == 1
    row = read_dead_letter(str(tmp_path), "r").to_pylist()[0]
    assert row == {"run_id": "r", "doc_id": None, "reason": "broken_json", "stage": "read", "file": "x.jsonl",
                   "line": 3, "original_row": "{oops", "detail": None}


def test_rows_without_reason_are_refused(tmp_path):
    writer = DeadLetterWriter(str(tmp_path), "r")
    with pytest.raises(ValueError, match="reason"):
        writer.write([{"doc_id": "1", "reason": None}])


def test_rerun_replaces_stale_parts(tmp_path):
    first = DeadLetterWriter(str(tmp_path), "r", rows_per_part=1)
    first.write([_reject(i, "empty_text") for i in range(3)])
    first.write([_reject(3, "empty_text")])
    first.close()
    assert len(first.parts) == 2
    second = DeadLetterWriter(str(tmp_path), "r")
    second.close()  # nothing rejected this time
    assert read_dead_letter(str(tmp_path), "r").num_rows == 0


def test_writes_to_s3(s3_bucket, s3_storage, s3_client):
    out = f"s3://{s3_bucket}/out"
    with DeadLetterWriter(out, "r7", s3_storage) as writer:
        writer.write([_reject(1, "bad_utf8"), _reject(2, "invalid_id")])
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert keys == ["out/runs/r7/dead_letter/part-00000.parquet"]
    assert dead_letter_uri(out, "r7") == f"{out}/runs/r7/dead_letter"
    assert read_dead_letter(out, "r7", s3_storage).column("reason").to_pylist() == ["bad_utf8", "invalid_id"]
