from __future__ import annotations

import pyarrow as pa
import pytest

import qbatch.connectors.file_progress as file_progress
from qbatch.connectors.file_progress import MANIFEST_SCHEMA, FileProgressStore, file_key, unit_stem


def _manifest(ids: list[str]) -> pa.Table:
    return pa.table({"doc_id": ids, "content_hash": [f"c-{i}" for i in ids],
                     "payload_hash": [f"p-{i}" for i in ids], "n_chunks": [len(i) for i in ids]})


def _rejects(n: int) -> pa.Table:
    return pa.table({"doc_id": [f"bad{i}" for i in range(n)], "reason": ["empty_text"] * n})


def test_key_is_stable_and_distinct():
    assert file_key("s3://b/a.parquet") == file_key("s3://b/a.parquet")
    assert file_key("s3://b/a.parquet") != file_key("s3://b/b.parquet")
    assert len(file_key("x")) == 16 and int(file_key("x"), 16) >= 0


def test_round_trip_of_markers_manifest_and_dead_letter(tmp_path):
    store = FileProgressStore(str(tmp_path), "run-1")
    assert store.done_files() == {} and list(store.iter_manifest_rows()) == []
    store.mark_done("s3://b/one.jsonl", {"rows": 3, "rejected": 1}, _manifest(["a", "bb", "ccc"]), _rejects(1))
    store.mark_done("s3://b/two.jsonl", {"rows": 1, "rejected": 0}, _manifest(["dddd"]), None)
    again = FileProgressStore(str(tmp_path), "run-1")
    assert again.done_files() == {"s3://b/one.jsonl": {"rows": 3, "rejected": 1},
                                  "s3://b/two.jsonl": {"rows": 1, "rejected": 0}}
    manifest = pa.concat_tables(again.iter_manifest_rows())
    assert manifest.schema == MANIFEST_SCHEMA
    assert sorted(manifest.column("doc_id").to_pylist()) == ["a", "bb", "ccc", "dddd"]
    assert dict(zip(manifest["doc_id"].to_pylist(), manifest["n_chunks"].to_pylist()))["ccc"] == 3
    assert pa.concat_tables(again.iter_dead_letter()).column("doc_id").to_pylist() == ["bad0"]


def test_rows_stream_in_bounded_batches(tmp_path):
    store = FileProgressStore(str(tmp_path), "run-1")
    store.mark_done("f1", {}, _manifest([f"d{i}" for i in range(25)]))
    store.mark_done("f2", {}, _manifest([f"e{i}" for i in range(7)]))
    sizes = [t.num_rows for t in store.iter_manifest_rows(batch_rows=10)]
    assert sum(sizes) == 32 and max(sizes) <= 10


def test_crash_before_the_marker_leaves_the_file_undone(tmp_path, monkeypatch):
    store = FileProgressStore(str(tmp_path), "run-1")
    real_write = file_progress.write_bytes

    def crash_on_marker(uri, data, storage=None):
        if uri.endswith(".done.json"):
            raise OSError("killed at 3 a.m.")
        real_write(uri, data, storage)

    monkeypatch.setattr(file_progress, "write_bytes", crash_on_marker)
    with pytest.raises(OSError):
        store.mark_done("f1", {"rows": 2}, _manifest(["a", "b"]), _rejects(2))
    monkeypatch.setattr(file_progress, "write_bytes", real_write)
    # The parts exist, but without a marker nothing of them is visible.
    assert (tmp_path / "runs" / "run-1" / "files" / f"{unit_stem('f1', 0)}.manifest.parquet").exists()
    assert store.done_files() == {}
    assert list(store.iter_manifest_rows()) == [] and list(store.iter_dead_letter()) == []


def test_a_file_is_done_when_all_its_units_are_in_any_order(tmp_path):
    store = FileProgressStore(str(tmp_path), "run-1")
    store.mark_started("f1", 2)
    store.mark_done("f1", {"read": 1, "rejected": {"empty_text": 1}}, _manifest([]), _rejects(1), unit=2, units=3)
    store.mark_done("f1", {"read": 2, "rejected": {}}, _manifest(["a", "b"]), None, unit=0, units=None)
    assert store.done_files() == {}  # unit 1 is still to do
    assert set(store.done_units()["f1"]) == {0, 2}
    assert store.started_keys() == {unit_stem("f1", 2)}
    store.mark_done("f1", {"read": 3, "rejected": {"empty_text": 2}}, _manifest(["c"]), _rejects(2), unit=1, units=None)
    assert store.done_files() == {"f1": {"read": 6, "rejected": {"empty_text": 3}}}
    assert sorted(pa.concat_tables(store.iter_manifest_rows())["doc_id"].to_pylist()) == ["a", "b", "c"]
    assert pa.concat_tables(store.iter_dead_letter()).num_rows == 3


def test_redoing_a_file_replaces_its_parts_and_drops_stale_rejects(tmp_path):
    store = FileProgressStore(str(tmp_path), "run-1")
    store.mark_done("f1", {"rows": 2}, _manifest(["a", "b"]), _rejects(2))
    store.mark_done("f1", {"rows": 3}, _manifest(["a", "b", "c"]), None)
    assert store.done_files() == {"f1": {"rows": 3}}
    assert pa.concat_tables(store.iter_manifest_rows()).num_rows == 3
    assert list(store.iter_dead_letter()) == []


def test_manifest_rows_are_conformed_or_refused(tmp_path):
    store = FileProgressStore(str(tmp_path), "run-1")
    extra = _manifest(["a"]).append_column("text", pa.array(["hello"]))
    store.mark_done("f1", {}, extra)
    assert pa.concat_tables(store.iter_manifest_rows()).schema == MANIFEST_SCHEMA
    with pytest.raises(ValueError, match="payload_hash"):
        store.mark_done("f2", {}, _manifest(["a"]).drop_columns(["payload_hash"]))


def test_clear_forgets_everything_and_leaves_other_runs(tmp_path):
    store, other = FileProgressStore(str(tmp_path), "run-1"), FileProgressStore(str(tmp_path), "run-2")
    store.mark_done("f1", {}, _manifest(["a"]), _rejects(1))
    other.mark_done("f1", {}, _manifest(["a"]))
    store.clear()
    store.clear()  # idempotent
    assert store.done_files() == {} and list(store.iter_dead_letter()) == []
    assert list(other.done_files()) == ["f1"]


def test_s3_round_trip_and_clear(s3_bucket, s3_storage):
    out = f"s3://{s3_bucket}/index"
    store = FileProgressStore(out, "run-1", s3_storage)
    assert store.done_files() == {}
    store.mark_done("s3://src/a.jsonl", {"rows": 2}, _manifest(["a", "b"]), _rejects(1))
    store.mark_done("s3://src/b.jsonl", {"rows": 1}, _manifest(["c"]))
    again = FileProgressStore(out, "run-1", s3_storage)
    assert again.done_files() == {"s3://src/a.jsonl": {"rows": 2}, "s3://src/b.jsonl": {"rows": 1}}
    assert sorted(pa.concat_tables(again.iter_manifest_rows()).column("doc_id").to_pylist()) == ["a", "b", "c"]
    assert pa.concat_tables(again.iter_dead_letter()).num_rows == 1
    again.clear()
    assert again.done_files() == {} and list(again.iter_manifest_rows()) == []
