"""The undo log on a real local-mode Qdrant collection (cosine, so Qdrant renormalises vectors): every
kind of in-place write is undone point for point, across a resumed attempt too."""

from __future__ import annotations

import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client.http import models

from qbatch.connectors.point_ids import point_id
from qbatch.connectors.qdrant_writer import PointWriter
from qbatch.connectors.undo_log import UndoLog

DIM = 8


@pytest.fixture
def client(tmp_path):
    c = QdrantClient(path=str(tmp_path / "q"))
    c.create_collection("live", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
    yield c
    c.close()


def _vectors(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


def _snapshot(client) -> dict[str, tuple[np.ndarray, dict]]:
    points, _ = client.scroll("live", limit=1000, with_vectors=True, with_payload=True)
    return {str(p.id): (np.asarray(p.vector, np.float32), dict(p.payload)) for p in points}


def _assert_same(before: dict, after: dict) -> None:
    assert set(after) == set(before)
    for pid, (vector, payload) in before.items():
        np.testing.assert_allclose(after[pid][0], vector, atol=1e-6)
        assert after[pid][1] == payload


def _seed_live(client) -> list[str]:
    ids = [point_id(f"d{i}", 0) for i in range(20)]
    writer = PointWriter(client, "live", batch_size=7)
    writer.write(ids, _vectors(20, 0), [{"doc_id": f"d{i}", "price": i, "run_id": "night-1"} for i in range(20)])
    writer.flush()
    return ids


def _in_place_writes(client, undo, ids: list[str], run_id: str) -> PointWriter:
    writer = PointWriter(client, "live", batch_size=4, undo=undo)
    changed = ids[:5] + [point_id("new", c) for c in range(3)]  # 5 overwritten, 3 added
    writer.write(changed, _vectors(8, 1), [{"doc_id": "x", "run_id": run_id}] * 8)
    writer.flush()
    writer.set_payload_many([({"price": -1, "run_id": run_id}, ids[5:8])])  # payload-only
    writer.delete_points(ids[8:12])  # deleted
    return writer


def test_restore_puts_back_overwritten_payload_updated_and_deleted_points_and_drops_added_ones(client, tmp_path):
    ids = _seed_live(client)
    before = _snapshot(client)
    undo = UndoLog(str(tmp_path / "run"), "live", "night-2")
    writer = _in_place_writes(client, undo, ids, "night-2")
    assert undo.captured == 5 + 3 + 4  # only points that existed: added ones have no before-image
    # Reads of before-images are counted apart from writes: 2 upserts, 1 payload update, 1 delete.
    assert (writer.counters.requests, writer.counters.undo_reads) == (4, 4)
    assert client.count("live", exact=True).count == 20 - 4 + 3
    result = undo.restore(client, PointWriter(client, "live", batch_size=5))
    assert (result.restored_points, result.removed_points) == (12, 3)
    _assert_same(before, _snapshot(client))
    again = undo.restore(client, PointWriter(client, "live", batch_size=5))  # idempotent
    assert again.removed_points == 0
    _assert_same(before, _snapshot(client))


def test_a_resumed_attempt_never_saves_a_point_it_already_overwrote(client, tmp_path):
    ids = _seed_live(client)
    before = _snapshot(client)
    first = UndoLog(str(tmp_path / "run"), "live", "night-2")
    _in_place_writes(client, first, ids, "night-2")  # then "crash"
    resumed = UndoLog(str(tmp_path / "run"), "live", "night-2")
    _in_place_writes(client, resumed, ids, "night-2")
    assert resumed.captured == 0  # everything it writes again already carries its run id or is gone
    assert len(resumed.part_uris()) == len(first.part_uris())
    resumed.restore(client, PointWriter(client, "live", batch_size=5))
    _assert_same(before, _snapshot(client))
