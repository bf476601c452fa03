"""Waiting for the cluster to place a job's actors: what is there passes at once, what never arrives
ends the wait with a transient error that names the config field and what is missing, and the
probe never outlives the wait."""

from __future__ import annotations

import pytest

from qbatch.common.errors import ResourcesUnavailableError
from qbatch.jobs.runtime.exit_codes import ExitCode, exit_code_for, is_transient
from qbatch.jobs.runtime.resource_wait import wait_for_resources
from tests.jobs.index.index_fixtures import catalog_rows, index_config, qdrant_at, write_corpus
from tests.jobs.runtime.ray_cluster_driver import run_on_cluster


def _live_probes() -> list:
    from ray.util import placement_group_table

    return [pg for pg in placement_group_table().values() if pg["state"] != "REMOVED"]


def test_resources_that_are_there_pass_and_leave_no_probe_behind(ray_session):
    waited = wait_for_resources("embed.resources_wait_s", {"CPU": 1.0, "GPU": 0.0}, 2, 60, what="embed actors")
    assert 0 <= waited < 60
    assert _live_probes() == []


def test_a_gpu_that_never_arrives_is_a_transient_error_naming_the_field(ray_session):
    with pytest.raises(ResourcesUnavailableError) as e:
        wait_for_resources("reranker.resources_wait_s", {"CPU": 1.0, "GPU": 1.0}, 2, 1, what="reranker actors")
    message = str(e.value)
    assert "reranker.resources_wait_s=1s" in message and "GPU 0 of the 2 needed" in message
    assert "CPU" not in message.split("the cluster has")[1]  # the session's 2 CPUs are enough: not missing
    code = exit_code_for(e.value)
    assert code == ExitCode.RESOURCES_UNAVAILABLE == 8 and is_transient(code)
    assert _live_probes() == []


def test_an_index_run_without_its_gpus_exits_8_before_writing(tmp_path, tiny_embedding_checkpoint):
    """A cluster that never gets a GPU node: after embed.resources_wait_s the job exits 8, naming the
    field and the missing GPU, and neither Qdrant nor the run's outputs got anything."""
    write_corpus(tmp_path / "src", catalog_rows(12), n_files=2)
    cfg = index_config(tmp_path, str(tmp_path / "src"), tiny_embedding_checkpoint)
    out, summary = run_on_cluster(["index", "--config", cfg, "--set", "embed.num_gpus=1", "--set", 'embed.device="cpu"',
                                   "--set", "embed.concurrency=[1, 2]", "--set", "embed.resources_wait_s=3"],
                                  gpu_nodes=0, timeout_s=300)
    assert out.returncode == summary["exit"] == ExitCode.RESOURCES_UNAVAILABLE, out.stderr[-3000:]
    assert "embed.resources_wait_s=3s" in out.stderr and "GPU 0 of the 1 needed" in out.stderr
    assert "exit 8 (resources_unavailable)" in out.stderr
    with qdrant_at(tmp_path / "qdrant") as client:
        assert client.get_collections().collections == [] and client.get_aliases().aliases == []
    run_dir = tmp_path / "out" / "catalog" / "runs" / "r1"
    assert (run_dir / "state.json").exists()  # the run began (lock, state), then waited
    assert not (run_dir / "files").exists() and not (run_dir / "dead_letter").exists()  # no file was started
    assert not (run_dir / "report.json").exists()
    assert not (tmp_path / "out" / "catalog" / "LOCK").exists()  # released for the retry
