"""The Qdrant writer stage: whole documents in, points written with wait=True, small ack rows out.
Local-mode Qdrant in this process; the pool of several writers against the benchmark's stand-in server
(a labelled stand-in: no real Qdrant server can run here, and local mode allows one writer)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from benchmarks.write_path_rows import embedded_rows
from qbatch.common.end_of_file import EOF_STAGE, STATS_STAGE, UnitEnd
from qbatch.connectors.point_ids import point_id
from qbatch.connectors.qdrant_config import QdrantConfig
from qbatch.connectors.qdrant_lease import writer_config
from qbatch.connectors.qdrant_writer_stage import ACK_SCHEMA, QdrantWriterStage


def _collection(path, name="docs", dim=8):
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(path))
    client.create_collection(name, vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE))
    client.close()


def _stage(tmp_path, **kwargs):
    cfg = writer_config(QdrantConfig(path=str(tmp_path / "q"), upsert_batch_size=4))
    return QdrantWriterStage(cfg, "docs", "r1", "2026-12-01T00:00:00+00:00", ["price"], **kwargs)


def test_documents_are_written_and_only_small_acks_come_back(tmp_path):
    _collection(tmp_path / "q")
    stage = _stage(tmp_path)
    batch = embedded_rows(0, 10, 8, end_unit=UnitEnd(0, 10, units=1))
    acks = stage(batch)
    assert acks.schema.equals(ACK_SCHEMA)
    assert not {"vector", "text", "payload_json", "token_ids"} & set(acks.column_names)
    rows = acks.to_pylist()
    docs = [r for r in rows if r["reject_stage"] is None]
    assert [r["doc_id"] for r in docs] == [f"doc-{i}" for i in range(10)]
    assert all(r["original_row"] is None and r["n_chunks"] == 1 and r["n_tokens"] == 24 for r in docs)
    assert [UnitEnd.from_json(r["reject_detail"]) for r in rows if r["reject_stage"] == EOF_STAGE] == [
        UnitEnd(0, 10, 1)]
    stats = json.loads(next(r for r in rows if r["reject_stage"] == STATS_STAGE)["reject_detail"])
    assert stats["points_written"] == 10 and stats["requests"] == 3  # 4 + 4 + 2, each acknowledged
    points = stage.client.retrieve("docs", [point_id("doc-3", 0)], with_payload=True, with_vectors=True)
    assert points[0].payload["doc_id"] == "doc-3" and points[0].payload["price"] == 3
    assert points[0].payload["run_id"] == "r1" and points[0].payload["text"].startswith("product 3")
    expected = batch.column("vector")[3].values.to_numpy()
    assert np.allclose(points[0].vector, expected, atol=1e-6)


def test_a_document_whose_embedding_failed_is_acked_as_a_reject_and_not_written(tmp_path):
    _collection(tmp_path / "q")
    stage = _stage(tmp_path)
    batch = embedded_rows(0, 3, 8)
    reasons = batch.column("reject_reason").to_pylist()
    stages = batch.column("reject_stage").to_pylist()
    reasons[1], stages[1] = "non_finite_vector", "embed"
    batch = batch.set_column(batch.schema.get_field_index("reject_reason"), "reject_reason", pa.array(reasons))
    batch = batch.set_column(batch.schema.get_field_index("reject_stage"), "reject_stage", pa.array(stages))
    rows = [r for r in stage(batch).to_pylist() if r["reject_stage"] != STATS_STAGE]
    assert [(r["doc_id"], r["reject_reason"]) for r in rows] == [
        ("doc-0", None), ("doc-1", "non_finite_vector"), ("doc-2", None)]
    assert json.loads(rows[1]["original_row"])["id"] == "doc-1"  # dead-lettered whole
    assert stage.client.count("docs", exact=True).count == 2


def test_a_document_cut_between_chunks_is_acked_part_by_part(tmp_path):
    """Ray may cut a block inside a document: each part is written and acked with its chunk range."""
    _collection(tmp_path / "q")
    batch = embedded_rows(0, 2, 8)
    batch = batch.set_column(batch.schema.get_field_index("n_chunks"), "n_chunks", pa.array([3, 3], pa.int32()))
    batch = batch.set_column(batch.schema.get_field_index("chunk"), "chunk", pa.array([1, 2], pa.int32()))
    batch = batch.set_column(batch.schema.get_field_index("doc_id"), "doc_id", pa.array(["doc-0", "doc-0"]))
    batch = batch.set_column(batch.schema.get_field_index("_line"), "_line", pa.array([1, 1], pa.int64()))
    stage = _stage(tmp_path)
    rows = [r for r in stage(batch).to_pylist() if r["reject_stage"] is None]
    assert [(r["doc_id"], r["chunk_lo"], r["chunks_here"], r["n_chunks"]) for r in rows] == [("doc-0", 1, 2, 3)]
    assert stage.client.count("docs", exact=True).count == 2
    assert stage.client.retrieve("docs", [point_id("doc-0", 2)])[0].payload["chunk"] == 2


def test_transient_upsert_failures_are_retried(tmp_path, monkeypatch):
    """FAULT INJECTION: 40% of upserts fail before reaching Qdrant; every point still lands once."""
    _collection(tmp_path / "q")
    monkeypatch.setenv("QBATCH_TEST_WRITER_FAIL_RATIO", "0.4")
    stage = _stage(tmp_path)
    stage.writer.base_delay_s = stage.writer.max_delay_s = 0.0
    rows = stage(embedded_rows(0, 40, 8)).to_pylist()
    stats = json.loads(rows[-1]["reject_detail"])
    assert stats["retries"] == stage.client.injected > 0
    assert stats["points_written"] == 40 == stage.client.count("docs", exact=True).count


def test_a_pool_of_writers_through_the_standin_server(ray_session):
    """Two writer actors (parallel_writers = 2) against the STAND-IN server: every point acknowledged once,
    by two processes other than this one."""
    import os

    import ray
    from qdrant_client import QdrantClient, models

    from benchmarks.standin_qdrant_server import StandinQdrant

    with StandinQdrant() as server:
        client = QdrantClient(url=server.url, check_compatibility=False)
        client.create_collection("docs", vectors_config=models.VectorParams(size=16, distance=models.Distance.COSINE))
        cfg = writer_config(QdrantConfig(url=server.url, parallel_writers=2, upsert_batch_size=32))
        blocks = [embedded_rows(i * 50, 50, 16, end_unit=UnitEnd(i, 50)) for i in range(8)]
        ds = ray.data.from_arrow(blocks).map_batches(
            QdrantWriterStage, fn_constructor_args=(cfg, "docs", "r1", "now", []), batch_size=None,
            batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=2), num_cpus=0.25)
        acks = pa.concat_tables(list(ds.iter_batches(batch_format="pyarrow", batch_size=None))).to_pylist()
        assert server.points == 400 == client.count("docs", exact=True).count
        client.close()
    docs = [r["doc_id"] for r in acks if r["reject_stage"] is None]
    assert sorted(docs) == sorted(f"doc-{i}" for i in range(400))
    pids = {json.loads(r["reject_detail"])["pid"] for r in acks if r["reject_stage"] == STATS_STAGE}
    assert len(pids) == 2 and os.getpid() not in pids
