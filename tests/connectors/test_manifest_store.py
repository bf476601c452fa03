from __future__ import annotations

import json
import os

import pyarrow as pa
import pytest
from hypothesis import given, settings, strategies as st

from qbatch.connectors.file_progress import MANIFEST_SCHEMA
from qbatch.connectors.manifest_store import (ManifestReader, ManifestWriter, bucket_of, delete_manifest, list_manifests,
                                       read_current, write_current)


def _rows(ids: list[str]) -> pa.Table:
    return pa.table({"doc_id": ids, "content_hash": [f"c-{i}" for i in ids],
                     "payload_hash": [f"p-{i}" for i in ids], "n_chunks": [1 + len(i) % 3 for i in ids]})


def _read_all(reader: ManifestReader) -> pa.Table:
    return pa.concat_tables(reader.read_bucket(i) for i in range(reader.n_buckets))


def test_bucket_is_a_stable_sha1_prefix():
    # sha1("doc-1") starts with 79135230...; pinned so a refactor cannot silently re-bucket old manifests.
    assert bucket_of("doc-1", 2**32) == int("79135230", 16)
    assert bucket_of("doc-1", 64) == int("79135230", 16) % 64


def test_round_trip_sorted_buckets_and_summary(tmp_path):
    out, ids = str(tmp_path), [f"doc-{i}" for i in range(200)]
    with ManifestWriter(out, "catalog", "catalog-1", n_buckets=8, spill_dir=str(tmp_path)) as writer:
        writer.add(_rows(ids[:120]))
        writer.add(_rows(ids[120:]).append_column("ignored", pa.array(["x"] * 80)))
        summary = writer.commit()
    assert (summary["n_buckets"], summary["docs"]) == (8, 200)
    assert summary["points"] == sum(1 + len(i) % 3 for i in ids)
    reader = ManifestReader(out, "catalog", "catalog-1")
    assert reader.exists() and reader.summary()["docs"] == 200
    for i in range(8):
        bucket = reader.read_bucket(i)
        got = bucket.column("doc_id").to_pylist()
        assert bucket.schema == MANIFEST_SCHEMA
        assert got == sorted(got) and all(bucket_of(d, 8) == i for d in got)
    assert sorted(_read_all(reader).column("doc_id").to_pylist()) == sorted(ids)
    assert [p for p in os.listdir(tmp_path) if p.startswith("qbatch-manifest-")] == []  # spill removed


@settings(deadline=None, max_examples=25)
@given(ids=st.sets(st.text(min_size=1, max_size=12), max_size=60), n_buckets=st.integers(1, 5),
       step=st.integers(1, 9))
def test_any_split_of_adds_yields_the_same_manifest(tmp_path_factory, ids, n_buckets, step):
    out = str(tmp_path_factory.mktemp("m"))
    ids = list(ids)
    writer = ManifestWriter(out, "a", "c", n_buckets=n_buckets)
    for start in range(0, len(ids), step):
        writer.add(_rows(ids[start:start + step]))
    assert writer.commit()["docs"] == len(ids)
    table = _read_all(ManifestReader(out, "a", "c"))
    assert sorted(table.column("doc_id").to_pylist()) == sorted(ids)
    assert dict(zip(table["doc_id"].to_pylist(), table["content_hash"].to_pylist())) == {i: f"c-{i}" for i in ids}


def test_uncommitted_manifest_does_not_exist(tmp_path):
    writer = ManifestWriter(str(tmp_path), "catalog", "catalog-1", n_buckets=4)
    writer.add(_rows(["a", "b"]))
    writer.close()
    reader = ManifestReader(str(tmp_path), "catalog", "catalog-1")
    assert not reader.exists()
    with pytest.raises(FileNotFoundError, match="_SUCCESS"):
        reader.read_bucket(0)


def test_recommit_after_a_crashed_attempt_replaces_the_manifest(tmp_path):
    out = str(tmp_path)
    with ManifestWriter(out, "catalog", "catalog-1", n_buckets=4) as writer:
        writer.add(_rows(["old-1", "old-2", "old-3"]))
        writer.commit()
    with ManifestWriter(out, "catalog", "catalog-1", n_buckets=2) as writer:
        writer.add(_rows(["new-1"]))
        assert writer.commit()["docs"] == 1
    reader = ManifestReader(out, "catalog", "catalog-1")
    assert reader.n_buckets == 2 and _read_all(reader).column("doc_id").to_pylist() == ["new-1"]


def test_duplicate_doc_ids_are_refused_by_name(tmp_path):
    writer = ManifestWriter(str(tmp_path), "catalog", "catalog-1", n_buckets=4)
    writer.add(_rows(["a", "dup"]))
    writer.add(_rows(["dup"]))
    with pytest.raises(ValueError, match="'dup'"):
        writer.commit()
    writer.close()
    assert not ManifestReader(str(tmp_path), "catalog", "catalog-1").exists()


def test_current_pointer_and_delete(tmp_path):
    out = str(tmp_path)
    assert read_current(out, "catalog") is None
    with pytest.raises(FileNotFoundError, match="commit it first"):
        write_current(out, "catalog", "catalog-1")
    for name in ("catalog-1", "catalog-2"):
        with ManifestWriter(out, "catalog", name, n_buckets=2) as writer:
            writer.add(_rows(["a"]))
            writer.commit()
    write_current(out, "catalog", "catalog-2")
    assert read_current(out, "catalog") == "catalog-2"
    assert list_manifests(out, "catalog") == ["catalog-1", "catalog-2"]
    with pytest.raises(ValueError, match="CURRENT"):
        delete_manifest(out, "catalog", "catalog-2")
    delete_manifest(out, "catalog", "catalog-1")
    delete_manifest(out, "catalog", "catalog-1")  # idempotent
    assert list_manifests(out, "catalog") == ["catalog-2"]
    assert not ManifestReader(out, "catalog", "catalog-1").exists()


def test_s3_round_trip(s3_bucket, s3_storage, tmp_path):
    out = f"s3://{s3_bucket}/index"
    with ManifestWriter(out, "catalog", "catalog-1", n_buckets=4, storage=s3_storage,
                        spill_dir=str(tmp_path)) as writer:
        writer.add(_rows([f"d{i}" for i in range(30)]))
        assert writer.commit()["docs"] == 30
    write_current(out, "catalog", "catalog-1", s3_storage)
    assert read_current(out, "catalog", s3_storage) == "catalog-1"
    reader = ManifestReader(out, "catalog", "catalog-1", s3_storage)
    assert json.loads(json.dumps(reader.summary()))["n_buckets"] == 4
    assert sorted(_read_all(reader).column("doc_id").to_pylist()) == sorted(f"d{i}" for i in range(30))
    assert list_manifests(out, "catalog", s3_storage) == ["catalog-1"]
