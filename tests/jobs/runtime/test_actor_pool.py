from __future__ import annotations

import json

import pytest

from qbatch.jobs.index.config import EmbedConfig, IndexConfig
from qbatch.jobs.runtime.actor_pool import plan_pools
from tests.jobs.index.index_fixtures import all_points, catalog_rows, index_config, qdrant_at, read_report, write_corpus
from tests.jobs.runtime.ray_cluster_driver import actor_notes, run_on_cluster


def test_two_cpus_get_one_actor_and_keep_a_cpu_for_reading_and_prep():
    size = plan_pools("embed", EmbedConfig(model="m", concurrency=[1, 4]), {"CPU": 2.0})
    assert size.concurrency == (1, 1) and size.num_cpus == 1.0 and size.cpus_left >= 1.0
    assert size.torch_threads == 2  # the one actor's torch uses both cores


def test_gpu_pools_ask_for_the_configured_range_whatever_the_snapshot_shows():
    cfg = IndexConfig.model_validate({"source": {"uri": "/d"},
                                      "embed": {"model": "m", "concurrency": [1, 8], "num_gpus": 1, "num_cpus": 2}})
    # A cold cluster (no GPU yet, head without CPUs), a warm one with 3 GPUs, a big one: the pool is
    # always [1, 8] x (2 CPU, 1 GPU); the autoscaler brings the nodes, never the snapshot.
    for snapshot in ({}, {"CPU": 32.0, "GPU": 3.0}, {"CPU": 256.0, "GPU": 16.0}):
        plan = plan_pools("embed", cfg.embed, snapshot, cpu_stages=True)
        assert plan.concurrency == (1, 8) and (plan.num_cpus, plan.num_gpus) == (2.0, 1.0), snapshot
        assert plan.torch_threads is None and plan.actor_bundle() == {"CPU": 2.0, "GPU": 1.0}
        assert plan.prep_concurrency >= 1
    # The CPU stages fit beside the GPU actors that can run on what is here now.
    plan = plan_pools("embed", cfg.embed, {"CPU": 32.0, "GPU": 3.0}, cpu_stages=True)
    assert plan.prep_concurrency * plan.prep_num_cpus + 3 * 2 <= 32 and plan.cpus_left == 26.0


def test_cpu_pools_keep_todays_sizing_and_describe_themselves():
    plan = plan_pools("embed", EmbedConfig(model="m", concurrency=[2, 16], num_cpus=2), {"CPU": 8.0}, cpu_stages=True)
    assert plan.concurrency == (2, 3) and plan.num_gpus == 0 and plan.actor_bundle() == {"CPU": 2.0}
    assert plan.torch_threads == 2 and plan.cpus_left == 2.0
    assert plan.describe() == ("embed actors (2, 3) x (2.0 CPU, 0.0 GPU, 2 torch threads); "
                               "prep actors 2 x 0.5 CPU; read tasks 0.25 CPU")


def test_concurrency_accepts_an_int_and_refuses_a_reversed_range():
    assert EmbedConfig(model="m", concurrency=3).concurrency == (3, 3)
    with pytest.raises(ValueError, match="concurrency"):
        EmbedConfig(model="m", concurrency=[4, 2])


def test_the_embed_pool_waits_for_gpu_nodes_and_grows_onto_those_that_join(tmp_path, tiny_embedding_checkpoint):
    """A cluster whose head has CPUs and no GPU, as a KubeRay cluster with `minReplicas: 0` starts: the
    job waits for its GPU, two GPU nodes join while it waits, and the pool grows onto both. Golden
    queries are embedded by a GPU actor too. Exact counts; no timing is asserted."""
    rows = catalog_rows(40)
    write_corpus(tmp_path / "src", rows, n_files=4)
    golden = tmp_path / "golden.jsonl"
    golden.write_text("".join(json.dumps({"query": r["title"], "expected_doc_ids": [r["id"]]}) + "\n" for r in rows[:4]))
    cfg = index_config(tmp_path, str(tmp_path / "src"), tiny_embedding_checkpoint,
                       extra=f'[gates]\ngolden_queries = "{golden}"\ngolden_min_recall = 0.0\n')
    record = tmp_path / "actors"
    record.mkdir()
    out, summary = run_on_cluster(["index", "--config", cfg, "--set", "embed.num_gpus=1", "--set", 'embed.device="cpu"',
                                   "--set", "embed.concurrency=[1, 2]", "--set", "embed.batch_size=4",
                                   "--set", "embed.max_length=128"], gpu_nodes=2, record_dir=record)
    assert out.returncode == 0, out.stderr[-3000:]
    # The job was waiting on its probe (one embed actor: 1 GPU, 1 CPU) when the GPU nodes joined.
    assert summary["waiting_probe"] == {"bundles": [{"GPU": 1.0, "CPU": 1.0}]} and len(summary["gpu_nodes"]) == 2
    notes = [n for n in actor_notes(record) if n["rows_embedded"]]
    assert len({n["actor_id"] for n in notes}) >= 2 and len({n["pid"] for n in notes}) >= 2
    assert all(n["node_id"] in summary["gpu_nodes"] and n["gpu_ids"] and n["device"] == "cpu" for n in notes)
    assert sum(n["rows_embedded"] for n in notes) == 40  # every chunk embedded exactly once across actors
    report = read_report(tmp_path, "r1")
    counts = report["counts"]
    assert (counts["read"], counts["rejected_total"], counts["docs_upserted"], counts["embedded"]) == (40, 0, 40, 40)
    assert any(g["gate"] == "golden_recall" and g["passed"] for g in report["gates"])
    with qdrant_at(tmp_path / "qdrant") as client:
        assert len(all_points(client, "catalog")) == 40
