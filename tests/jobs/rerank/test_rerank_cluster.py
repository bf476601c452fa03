"""The same rerank plan on a two-node Ray cluster (ray.cluster_utils.Cluster, each node with 2 CPUs and
one GPU resource; torch runs on the CPU): the day equals a one-node run's, and the acknowledgements
of both phases come from both nodes (the join's tasks and the scoring actors spread)."""

from __future__ import annotations

import json
from pathlib import Path

from qbatch.connectors.rerank_table import read_rerank_partition
from qbatch.jobs.runtime.exit_codes import ExitCode
from tests.jobs.rerank.test_job import DAY, MAX_LENGTH, jsonl, make_corpus, make_log, rerank, write_config
from tests.jobs.runtime.ray_cluster_driver import run_on_cluster


def test_two_nodes_give_the_same_day_and_both_do_the_work(tmp_path, stdlib_pairs, tiny_reranker_checkpoint,
                                                          ray_session):
    corpus = jsonl(tmp_path / "corpus.jsonl", make_corpus(stdlib_pairs, 200))
    (tmp_path / "log").mkdir()
    for i in range(4):  # one read task per file: work for both nodes from the start
        jsonl(tmp_path / "log" / f"part-{i}.jsonl", make_log(stdlib_pairs[i * 40:], 40, 160, seed=i, max_candidates=6))
    config = write_config(tmp_path / "rerank.toml", {
        "queries": {"uri": str(tmp_path / "log"), "format": "jsonl"},
        "documents": {"source": "corpus", "id_column": "id", "text_column": "text"},
        "documents.corpus": {"uri": str(corpus)},
        "reranker": {"model": str(tiny_reranker_checkpoint), "max_length": MAX_LENGTH, "dtype": "float32",
                     "device": "cpu", "num_gpus": 1, "num_cpus": 1, "concurrency": 2, "resources_wait_s": 120},
        "output": {"run_date": DAY.isoformat()},
        "run": {"progress": False, "pairs_per_part": 30, "prepare_partitions": 6, "max_reject_ratio": 0.2}})
    one = tmp_path / "one-node"
    assert rerank(config, "--set", f"output.uri={one}", "--set", "reranker.num_gpus=0",
                  "--set", "reranker.concurrency=1") == ExitCode.OK
    two = tmp_path / "two-nodes"
    proc, summary = run_on_cluster(["rerank", "--config", config, "--set", f"output.uri={two}", "--log-level", "WARNING"],
                                   gpu_nodes=0, extra=("--worker-nodes", "1", "--node-gpus", "1"))
    assert summary.get("exit") == ExitCode.OK, proc.stderr[-3000:]
    nodes = {summary["head_node"], *summary["worker_nodes"]}
    a = read_rerank_partition(str(one), DAY).to_pandas().sort_values(["query_id", "new_rank"]).reset_index(drop=True)
    b = read_rerank_partition(str(two), DAY).to_pandas().sort_values(["query_id", "new_rank"]).reset_index(drop=True)
    assert len(a) > 100 and a.equals(b)
    report = json.loads(next(Path(two, "_reports").rglob("report.json")).read_text())
    assert set(report["workers"]["score_nodes"]) == nodes  # one scoring actor per node (one GPU each)
    assert set(report["workers"]["prepare_nodes"]) == nodes  # the join's reduce tasks ran on both
