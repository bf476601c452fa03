"""The collection guard records how vectors were made and refuses a run that would make them differently."""

from __future__ import annotations

from typing import Any

import pytest
from qdrant_client import QdrantClient
from qdrant_client.http import models

from qbatch.common.errors import ConfigError, GateFailedError
from qbatch.connectors.collection_guard import (
    METADATA_KEY, CollectionSpec, ensure_collection, finish_bulk_load, read_spec, record_precisions, spec_differences)
from qbatch.connectors.qdrant_config import QdrantConfig

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect in the local Qdrant")


def make_spec(**over: Any) -> CollectionSpec:
    args = dict(dim=8, distance="cosine", model="Qwen/Qwen3-Embedding-0.6B", model_revision="sha256:abc",
                instructions={"query": "Given a web search query, retrieve relevant passages"},
                chunking={"size": 512, "overlap": 64}, max_length=8192, qbatch_version="0.1.0")
    return CollectionSpec.build(**{**args, **over})


class Spy:
    """SPY, not a fake: forwards every call to the real local-mode client and records name + kwargs."""

    def __init__(self, real: QdrantClient):
        self.real, self.calls = real, []

    def __getattr__(self, name: str):
        target = getattr(self.real, name)

        def call(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            return target(*args, **kwargs)
        return call

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


@pytest.fixture
def client(tmp_path):
    c = QdrantClient(path=str(tmp_path / "q"))
    yield c
    c.close()


def test_create_records_the_spec_and_vector_params(client):
    assert ensure_collection(client, QdrantConfig(), "docs", make_spec()) is True
    assert read_spec(client, "docs") == make_spec().as_metadata()
    vectors = client.get_collection("docs").config.params.vectors
    assert (vectors.size, vectors.distance) == (8, models.Distance.COSINE)


def test_the_spec_survives_reopening_and_the_same_spec_passes(tmp_path):
    path = str(tmp_path / "q")
    c = QdrantClient(path=path)
    ensure_collection(c, QdrantConfig(), "docs", make_spec())
    c.close()
    c = QdrantClient(path=path)
    try:
        # A new qbatch version is informational only: upgrading must not lock existing collections.
        assert ensure_collection(c, QdrantConfig(), "docs", make_spec(qbatch_version="0.2.0")) is False
        assert read_spec(c, "docs")["qbatch_version"] == "0.1.0"
    finally:
        c.close()


@pytest.mark.parametrize("change, expected", [
    ({"dim": 16}, "dim: 8 -> 16"),
    ({"distance": "dot"}, "distance: 'cosine' -> 'dot'"),
    ({"model": "Qwen/Qwen3-Embedding-8B"}, "model: 'Qwen/Qwen3-Embedding-0.6B' -> 'Qwen/Qwen3-Embedding-8B'"),
    ({"model_revision": "sha256:def"}, "model_revision: 'sha256:abc' -> 'sha256:def'"),
    ({"instructions": {"query": "Find products"}},
     "instructions.query: 'Given a web search query, retrieve relevant passages' -> 'Find products'"),
    ({"chunking": {"size": 256, "overlap": 64}}, "chunking.size: 512 -> 256"),
])
def test_a_different_spec_is_refused_naming_the_field(client, change, expected):
    ensure_collection(client, QdrantConfig(), "docs", make_spec())
    cfg = QdrantConfig(distance=change.get("distance", "cosine"))
    with pytest.raises(GateFailedError) as info:
        ensure_collection(client, cfg, "docs", make_spec(**change))
    assert expected in str(info.value) and "'docs'" in str(info.value)
    assert read_spec(client, "docs") == make_spec().as_metadata()  # the refused run changed nothing


def test_every_difference_is_listed(client):
    ensure_collection(client, QdrantConfig(), "docs", make_spec())
    with pytest.raises(GateFailedError) as info:
        ensure_collection(client, QdrantConfig(), "docs", make_spec(dim=4, model="other", max_length=512))
    msg = str(info.value)
    assert "dim: 8 -> 4" in msg and "model: 'Qwen/Qwen3-Embedding-0.6B' -> 'other'" in msg
    assert "max_length: 8192 -> 512" in msg


def test_live_vector_size_wins_over_recorded_metadata(client):
    # Metadata that lies about the dim (hand-edited) must not let a wrong-size run through.
    client.create_collection("docs", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE),
                             metadata={METADATA_KEY: make_spec().as_metadata()})
    with pytest.raises(GateFailedError, match="dim: 4 -> 8"):
        ensure_collection(client, QdrantConfig(), "docs", make_spec())


def test_a_collection_without_a_spec_is_refused(client):
    client.create_collection("foreign", vectors_config=models.VectorParams(size=8, distance=models.Distance.COSINE))
    assert read_spec(client, "foreign") is None
    with pytest.raises(GateFailedError, match="carries no qbatch spec"):
        ensure_collection(client, QdrantConfig(), "foreign", make_spec())


def test_create_passes_indexes_hnsw_quantization_and_metadata(client):
    # Local mode accepts but ignores payload indexes, HNSW and quantization (its payload_schema stays
    # empty), so what reaches qdrant-client is checked through a spy on the real client.
    spy = Spy(client)
    cfg = QdrantConfig(payload_indexes={"lang": "keyword", "year": "integer"}, quantization="scalar_int8",
                       hnsw_m=32, hnsw_ef_construct=200, shard_number=2)
    assert ensure_collection(spy, cfg, "docs", make_spec(), bulk_load=True)
    create = next(kw for name, _, kw in spy.calls if name == "create_collection")
    assert create["hnsw_config"].m == 0 and create["hnsw_config"].ef_construct == 200
    assert create["quantization_config"].scalar.type == models.ScalarType.INT8
    assert create["shard_number"] == 2 and create["metadata"] == {
        METADATA_KEY: make_spec().as_metadata(),
        "qbatch_settings": {"hnsw_m": 32, "hnsw_ef_construct": 200, "quantization": "scalar_int8", "on_disk": False,
                            "write_consistency_factor": 1, "shard_number": 2, "replication_factor": 1}}
    indexes = [(kw["field_name"], kw["field_schema"]) for name, _, kw in spy.calls if name == "create_payload_index"]
    assert indexes == [("lang", models.PayloadSchemaType.KEYWORD), ("year", models.PayloadSchemaType.INTEGER)]
    assert spy.names().index("create_payload_index") > spy.names().index("create_collection")
    finish_bulk_load(spy, cfg, "docs")
    update = next(kw for name, _, kw in spy.calls if name == "update_collection")
    assert update["hnsw_config"].m == 32


def test_distance_in_config_and_spec_must_agree(client):
    with pytest.raises(ConfigError, match="'dot'"):
        ensure_collection(client, QdrantConfig(distance="dot"), "docs", make_spec())
    assert not client.collection_exists("docs")


def test_losing_a_creation_race_judges_the_winner(client):
    class RacingClient(Spy):
        """FAKE race: another run creates the collection (with another model) just before our create."""

        def create_collection(self, name, **kwargs):
            self.real.create_collection(name, vectors_config=kwargs["vectors_config"],
                                        metadata={METADATA_KEY: make_spec(model="rival").as_metadata()})
            return self.real.create_collection(name, **kwargs)

    with pytest.raises(GateFailedError, match="model: 'rival' -> 'Qwen/Qwen3-Embedding-0.6B'"):
        ensure_collection(RacingClient(client), QdrantConfig(), "docs", make_spec())


def test_spec_differences_ignores_informational_fields():
    assert spec_differences({"qbatch_version": "1", "a": {"b": 1}}, {"qbatch_version": "2", "a": {"b": 1}}) == []
    assert spec_differences({"a": 1}, {}) == ["a: 1 -> '<unset>'"]


def test_fingerprint_is_compared_in_json_terms(client):
    ensure_collection(client, QdrantConfig(), "docs", make_spec(chunking={"sizes": (512, 64)}))
    assert ensure_collection(client, QdrantConfig(), "docs", make_spec(chunking={"sizes": [512, 64]})) is False
    with pytest.raises(ValueError, match="must not repeat"):
        CollectionSpec(dim=8, distance="cosine", fingerprint={"dim": 4})
    with pytest.raises(ValueError, match="JSON values only"):
        CollectionSpec(dim=8, distance="cosine", fingerprint={"model": object()})


def test_precision_is_recorded_for_information_and_never_compared(client):
    """A collection built in fp32 takes bf16 vectors (and back): they differ by rounding only."""
    from qbatch.connectors.collection_settings import SETTINGS_KEY

    ensure_collection(client, QdrantConfig(), "docs", make_spec())
    assert record_precisions(client, "docs", {"float32"}) == ["float32"]
    assert record_precisions(client, "docs", {"bfloat16"}) == ["bfloat16", "float32"]  # both kinds now in it
    metadata = client.get_collection("docs").config.metadata
    assert metadata[METADATA_KEY] == {**make_spec().as_metadata(), "precision": ["bfloat16", "float32"]}
    assert SETTINGS_KEY in metadata  # the rewrite of our entry leaves the others alone
    # The guard still passes the same spec, and a different model is still refused.
    assert ensure_collection(client, QdrantConfig(), "docs", make_spec()) is False
    with pytest.raises(GateFailedError, match="model_revision"):
        ensure_collection(client, QdrantConfig(), "docs", make_spec(model_revision="sha256:other"))
    assert spec_differences({"precision": ["float32"]}, {"precision": ["bfloat16"]}) == []
    client.create_collection("foreign", vectors_config=models.VectorParams(size=8, distance=models.Distance.COSINE))
    assert record_precisions(client, "foreign", {"bfloat16"}) == []  # not ours: untouched
    assert client.get_collection("foreign").config.metadata in (None, {})
