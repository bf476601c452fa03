"""Every shipped config loads, and the cluster configs agree with the cluster profile."""

from __future__ import annotations

import pytest

from qbatch.jobs.runtime.config_loading import load_config
from qbatch.jobs.index.config import IndexConfig
from qbatch.jobs.rerank.config import RerankConfig
from tests.infra.manifest_files import CONFIGS

CONFIG_FILES = sorted(CONFIGS.glob("*.toml"))

# Settings of the cluster and of the collection shape that every cluster job config must repeat as
# configs/cluster-gpu.toml has them.
PROFILE_FIELDS = {
    "embed": ["model", "dim", "dtype", "device", "max_batch_tokens", "concurrency", "num_gpus", "num_cpus"],
    "qdrant": ["url", "api_key_file", "prefer_grpc", "distance", "on_disk", "quantization", "shard_number",
               "replication_factor", "write_consistency_factor", "parallel_writers"],
}


def model_for(path):
    return RerankConfig if path.name.startswith("rerank") else IndexConfig


def test_the_expected_configs_exist():
    assert {p.name for p in CONFIG_FILES} >= {"catalog-nightly.toml", "crosslingual-backfill.toml",
                                              "rerank-daily.toml", "cluster-gpu.toml"}


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_config_loads(path):
    config = load_config(model_for(path), path)
    assert config.qdrant.url and config.qdrant.api_key is None  # never a key in a file


@pytest.mark.parametrize("path", [p for p in CONFIG_FILES if model_for(p) is IndexConfig and p.name != "cluster-gpu.toml"],
                         ids=lambda p: p.name)
def test_cluster_configs_agree_with_the_profile(path):
    profile = load_config(IndexConfig, CONFIGS / "cluster-gpu.toml")
    config = load_config(IndexConfig, path)
    for section, fields in PROFILE_FIELDS.items():
        for field in fields:
            want, got = getattr(getattr(profile, section), field), getattr(getattr(config, section), field)
            assert got == want, f"{path.name}: {section}.{field} = {got!r}, cluster-gpu.toml has {want!r}"


def test_job_specific_settings():
    nightly = load_config(IndexConfig, CONFIGS / "catalog-nightly.toml")
    assert nightly.run.mode == "incremental" and nightly.chunking.enabled
    assert nightly.qdrant.collection == "catalog" and nightly.gates.golden_queries
    assert nightly.columns.lang and nightly.columns.text_template
    backfill = load_config(IndexConfig, CONFIGS / "crosslingual-backfill.toml")
    assert backfill.run.mode == "append" and backfill.qdrant.payload_indexes["lang"] == "keyword"
    assert "any language" in backfill.embed.query_instruction and backfill.source.glob.startswith("dt=")
    rerank = load_config(RerankConfig, CONFIGS / "rerank-daily.toml")
    assert rerank.documents.source == "qdrant" and rerank.candidates.retrieve_top_k > 0
    assert rerank.output.redact_queries and rerank.reranker.model == "Qwen/Qwen3-Reranker-0.6B"
    assert rerank.qdrant.collection == nightly.qdrant.collection  # candidates come from the live alias
