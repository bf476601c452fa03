"""Collection settings drift on a real local-mode collection: changeable settings are applied and
recorded, fixed ones refuse the run naming them. Local mode accepts update_collection but reports
defaults, so a call recorder shows what reached Qdrant."""

from __future__ import annotations

import pytest
from qdrant_client import QdrantClient

from qbatch.common.errors import ConfigError
from qbatch.connectors.collection_guard import CollectionSpec, ensure_collection
from qbatch.connectors.collection_settings import SETTINGS_KEY, reconcile_settings, recorded_settings
from qbatch.connectors.qdrant_config import QdrantConfig

SPEC = CollectionSpec.build(dim=8, distance="cosine", model="m", model_revision="r", instructions={},
                            chunking={}, max_length=64, qbatch_version="0")


class Recorder:
    """CALL RECORDER around a REAL local-mode client: records update_collection calls and forwards them."""

    def __init__(self, real):
        self.real, self.updates = real, []

    def __getattr__(self, name):
        attr = getattr(self.real, name)
        if name != "update_collection":
            return attr

        def record(*args, **kwargs):
            self.updates.append(kwargs)
            return attr(*args, **kwargs)
        return record


@pytest.fixture
def client(tmp_path):
    real = QdrantClient(path=str(tmp_path / "q"))
    yield Recorder(real)
    real.close()


def test_settings_are_recorded_at_creation_and_an_unchanged_config_changes_nothing(client):
    cfg = QdrantConfig(collection="c", hnsw_m=32, quantization="scalar_int8")
    ensure_collection(client, cfg, "c", SPEC, bulk_load=True)
    assert recorded_settings(client, "c")["hnsw_m"] == 32  # the final m, not bulk loading's 0
    assert reconcile_settings(client, cfg, "c") == [] and client.updates == []


def test_changeable_settings_are_applied_in_place_recorded_and_reported(client):
    ensure_collection(client, QdrantConfig(collection="c"), "c", SPEC)
    wanted = QdrantConfig(collection="c", hnsw_m=48, quantization="binary", on_disk=True)
    applied = reconcile_settings(client, wanted, "c")
    assert applied == ["qdrant.hnsw_m: 16 -> 48", "qdrant.quantization: 'none' -> 'binary'",
                       "qdrant.on_disk: False -> True"]
    sent = client.updates[0]
    assert sent["hnsw_config"].m == 48 and sent["quantization_config"].binary is not None
    assert sent["vectors_config"][""].on_disk is True
    meta = client.get_collection("c").config.metadata
    assert meta[SETTINGS_KEY]["hnsw_m"] == 48 and meta["qbatch"]["dim"] == 8  # the guard's spec survives
    assert reconcile_settings(client, wanted, "c") == []  # recorded: the next run changes nothing


def test_settings_qdrant_cannot_change_refuse_the_run_naming_them(client):
    ensure_collection(client, QdrantConfig(collection="c"), "c", SPEC)
    with pytest.raises(ConfigError, match="shard_number") as err:
        reconcile_settings(client, QdrantConfig(collection="c", shard_number=3, hnsw_m=8), "c")
    assert "replication_factor" not in str(err.value) and "run.mode = 'full'" in str(err.value)
    assert client.updates == []  # refused before anything was changed
