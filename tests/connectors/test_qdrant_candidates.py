"""What the rerank plan asks of Qdrant: chunk-0 payload texts by doc id and batched searches, over a
worker's own client or through the one actor that owns a local-mode folder."""

from __future__ import annotations

import pytest
from qdrant_client import QdrantClient
from qdrant_client.http import models

from qbatch.connectors.point_ids import point_id
from qbatch.connectors.qdrant_candidates import QdrantCandidates, QdrantRequests, start_local_actor
from qbatch.connectors.qdrant_config import QdrantConfig


def build(path) -> None:
    client = QdrantClient(path=str(path))
    client.create_collection("c1", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
    points = [models.PointStruct(id=point_id(d, ch), vector=[1.0, 0.0, 0.0, float(i)],
                                 payload={"doc_id": d, "chunk": ch, "text": f"{d} chunk {ch}"})
              for i, (d, ch) in enumerate([("a", 0), ("a", 1), ("b", 1), ("c", 0)])]
    client.upsert("c1", points)
    client.update_collection_aliases(change_aliases_operations=[
        models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name="c1", alias_name="live"))])
    client.close()


def test_texts_read_chunk_zero_by_point_id_and_search_is_one_request(tmp_path):
    build(tmp_path / "qd")
    client = QdrantClient(path=str(tmp_path / "qd"))
    requests = QdrantRequests(client, "live")
    assert requests.texts(["a", "b", "c", "zz", "a"]) == {"a": "a chunk 0", "c": "c chunk 0"}
    hits = requests.search([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]], limit=3)
    assert len(hits) == 2 and all(len(h) == 3 for h in hits) and hits[0][0][0] == "a"
    assert requests.requests == {"lookup_requests": 1, "search_requests": 1}
    client.close()


def test_local_mode_goes_through_the_one_owning_actor(tmp_path, ray_session):
    build(tmp_path / "qd")
    cfg = QdrantConfig(path=str(tmp_path / "qd"), collection="live")
    actor = start_local_actor(cfg, "live")
    try:
        access = QdrantCandidates(cfg, "live", actor).open()
        assert access.texts(["c", "a"]) == {"a": "a chunk 0", "c": "c chunk 0"}
        assert access.search([[0.0, 0.0, 0.0, 1.0]], limit=1)[0][0][0] in {"b", "c"}
        with pytest.raises(RuntimeError):  # the folder is the actor's: a second client is refused
            QdrantClient(path=str(tmp_path / "qd"))
    finally:
        ray_session.kill(actor)
