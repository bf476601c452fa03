"""Blue/green alias helpers in local mode, which supports aliases (kept in its meta.json)."""

from __future__ import annotations

import pytest
from qdrant_client import QdrantClient
from qdrant_client.http import models

from qbatch.connectors.qdrant_aliases import (
    alias_target, collections_for_alias, delete_collections, stale_collections, switch_alias, versioned_name)


def make(client: QdrantClient, name: str, marker: float) -> None:
    client.create_collection(name, vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
    client.upsert(name, points=[models.PointStruct(id=1, vector=[marker, 0.0], payload={"build": name})])


@pytest.fixture
def client(tmp_path):
    c = QdrantClient(path=str(tmp_path / "q"))
    yield c
    c.close()


def test_switch_creates_then_moves_the_alias_in_one_request(client):
    make(client, "idx__001", 1.0)
    make(client, "idx__002", 2.0)
    assert alias_target(client, "idx") is None
    assert switch_alias(client, "idx", "idx__001") is None
    assert client.retrieve("idx", [1])[0].payload == {"build": "idx__001"}  # reads go through the alias

    calls = []
    real = client.update_collection_aliases

    def spy(**kwargs):  # SPY on the real client's method: records, then forwards
        calls.append(kwargs["change_aliases_operations"])
        return real(**kwargs)

    client.update_collection_aliases = spy
    assert switch_alias(client, "idx", "idx__002") == "idx__001"
    assert len(calls) == 1
    assert [type(op) for op in calls[0]] == [models.DeleteAliasOperation, models.CreateAliasOperation]
    assert alias_target(client, "idx") == "idx__002"
    assert client.retrieve("idx", [1])[0].payload == {"build": "idx__002"}


def test_alias_survives_reopening(tmp_path):
    path = str(tmp_path / "q")
    c = QdrantClient(path=path)
    make(c, "idx__001", 1.0)
    switch_alias(c, "idx", "idx__001")
    c.close()
    c = QdrantClient(path=path)
    try:
        assert alias_target(c, "idx") == "idx__001"
    finally:
        c.close()


def test_switch_to_a_missing_collection_or_an_alias_leaves_the_alias_alone(client):
    make(client, "idx__001", 1.0)
    switch_alias(client, "idx", "idx__001")
    with pytest.raises(ValueError, match="not a collection"):
        switch_alias(client, "idx", "idx__404")
    with pytest.raises(ValueError, match="not a collection"):
        switch_alias(client, "other", "idx")  # `idx` is an alias
    assert alias_target(client, "idx") == "idx__001" and alias_target(client, "other") is None


def test_collections_for_alias_are_sorted_and_prefixed(client):
    for name in ["idx__20260103", "idx__20260101", "idx_20260102", "idxx__1", "other__1", "idx__20260102"]:
        make(client, name, 1.0)
    assert collections_for_alias(client, "idx") == ["idx__20260101", "idx__20260102", "idx__20260103"]
    assert versioned_name("idx", "20260104") == "idx__20260104"
    with pytest.raises(ValueError, match="not a valid Qdrant collection name"):
        versioned_name("idx", "2026/01")


def test_cleanup_never_deletes_the_live_collection(client):
    for stamp in ["001", "002", "003", "004"]:
        make(client, f"idx__{stamp}", 1.0)
    switch_alias(client, "idx", "idx__002")
    assert stale_collections(client, "idx", keep=1) == ["idx__001", "idx__003"]
    deleted = delete_collections(client, ["idx__001", "idx__002", "idx__404"], protect="idx")
    assert deleted == ["idx__001"]
    assert collections_for_alias(client, "idx") == ["idx__002", "idx__003", "idx__004"]
    assert alias_target(client, "idx") == "idx__002"
