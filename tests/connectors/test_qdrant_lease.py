"""The driver's client is lent to the writer stage in local mode: closed for the load pass, reopened after."""

from __future__ import annotations

import pytest
from qdrant_client import QdrantClient, models

from qbatch.connectors.qdrant_config import QdrantConfig
from qbatch.connectors.qdrant_connection import connect
from qbatch.connectors.qdrant_lease import QdrantLease, writer_config


def test_the_folder_is_free_while_released_and_the_client_comes_back(tmp_path):
    cfg = QdrantConfig(path=str(tmp_path / "q"))
    lease = QdrantLease(cfg, connect(cfg))
    with lease.released():
        other = QdrantClient(path=str(tmp_path / "q"))  # what the writer actor does: the folder is free
        other.create_collection("c", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
        with pytest.raises(RuntimeError, match="released to the writer stage"):
            lease.get_collections()
        other.close()
    assert [c.name for c in lease.get_collections().collections] == ["c"]  # reopened, sees the writer's work
    lease.close()


def test_a_failed_pass_reraises_its_own_error_and_reopens_on_first_use(tmp_path):
    cfg = QdrantConfig(path=str(tmp_path / "q"))
    lease = QdrantLease(cfg, connect(cfg))
    with pytest.raises(ValueError, match="writer failed"):
        with lease.released():
            raise ValueError("writer failed")
    assert lease.get_collections().collections == []
    lease.close()


def test_writer_config_makes_a_local_path_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert writer_config(QdrantConfig(path="rel/q")).path == str(tmp_path / "rel" / "q")
