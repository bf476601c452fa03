"""Run one `qbatch` command against its own multi-node Ray cluster (ray.cluster_utils.Cluster): a head
with CPUs and no GPU, and optionally GPU nodes that join once the job waits for them (its placement
group probe is pending), the way an autoscaler would add them. The tests start it as a subprocess, since a second Ray cluster
cannot share the test session's Ray:

    python -m tests.jobs.runtime.ray_cluster_driver --gpu-nodes 2 -- index --config c.toml

Ray's GPUs here are only a resource (`add_node(num_gpus=1)`); torch runs on the CPU because the
configs set `embed.device = "cpu"`. With QBATCH_TEST_RECORD_DIR set, every embed actor keeps one
JSON file there (actor id, pid, node id, the GPU ids Ray gave it, its device, the rows it embedded). The last stdout line is a JSON
summary: exit code, seconds, the probe the job waited on, the GPU nodes added."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from qbatch.pipeline.embed_stage import EmbedStage

REPO = Path(__file__).resolve().parents[3]
RECORD_ENV = "QBATCH_TEST_RECORD_DIR"
_NODE_ARGS = {"object_store_memory": 96 * 1024 * 1024}
_SECOND_ACTOR_WAIT_S = 180.0  # a bound, not a pass/fail timing: past it the first actor goes on alone


class RecordingEmbedStage(EmbedStage):
    """The real embed stage, plus a note of where it runs and how many rows it embedded. Its first
    batches wait (bounded) until a second actor has started, the way a long job would keep the first
    actor busy while the pool grows."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        import ray

        ctx = ray.get_runtime_context()
        self.note = {"actor_id": ctx.get_actor_id(), "pid": os.getpid(), "node_id": ctx.get_node_id(),
                     "gpu_ids": [str(g) for g in ray.get_gpu_ids()], "device": str(self.embedder.device),
                     "rows_embedded": 0}
        self.path = os.path.join(os.environ[RECORD_ENV], f"actor-{self.note['actor_id']}.json")
        self._write()

    def _write(self) -> None:
        with open(self.path + ".tmp", "w") as f:
            json.dump(self.note, f)
        os.replace(self.path + ".tmp", self.path)

    def __call__(self, batch):
        deadline = time.monotonic() + _SECOND_ACTOR_WAIT_S
        while len(actor_notes(os.environ[RECORD_ENV])) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        out = super().__call__(batch)
        self.note["rows_embedded"] += sum(1 for v in out.column("vector").to_pylist() if v is not None)
        self._write()
        return out


def actor_notes(record_dir: str | Path) -> list[dict]:
    """The notes of every embed actor that started, read back."""
    return [json.loads(p.read_text()) for p in sorted(Path(record_dir).glob("actor-*.json"))]


def run_on_cluster(qbatch_args: list, gpu_nodes: int, record_dir: Path | None = None,
                   timeout_s: float = 540, extra: tuple[str, ...] = ()) -> tuple[subprocess.CompletedProcess, dict]:
    """Run this module in a subprocess; returns the process and its JSON summary. `extra`: more of its options."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", **({RECORD_ENV: str(record_dir)} if record_dir else {})}
    out = subprocess.run([sys.executable, "-m", "tests.jobs.runtime.ray_cluster_driver", "--gpu-nodes",
                          str(gpu_nodes), *extra, "--", *map(str, qbatch_args)], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=timeout_s)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no summary from the driver (exit {out.returncode}): {out.stderr[-3000:]}"
    return out, json.loads(lines[-1])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--head-cpus", type=int, default=2)
    parser.add_argument("--gpu-nodes", type=int, default=0, help="GPU nodes (1 GPU, 1 CPU each) to add")
    parser.add_argument("--worker-nodes", type=int, default=0,
                        help="nodes present from the start (--head-cpus CPUs and --node-gpus GPUs each)")
    parser.add_argument("--node-gpus", type=int, default=0, help="GPUs of the head and of each --worker-nodes node")
    parser.add_argument("--delay-s", type=float, default=2.0,
                        help="how long the job waits for its resources before the GPU nodes join")
    parser.add_argument("qbatch", nargs=argparse.REMAINDER, help="-- then the qbatch arguments")
    opts = parser.parse_args(argv)
    args = opts.qbatch[1:] if opts.qbatch[:1] == ["--"] else opts.qbatch

    import ray
    from ray.cluster_utils import Cluster

    import qbatch.pipeline.embed_stage
    from qbatch.jobs import cli

    if os.environ.get(RECORD_ENV):
        qbatch.pipeline.embed_stage.EmbedStage = RecordingEmbedStage  # the dataset plan imports it by name
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": opts.head_cpus, "num_gpus": opts.node_gpus,
                                                            **_NODE_ARGS})
    result: dict = {"gpu_nodes": [], "worker_nodes": [
        cluster.add_node(num_cpus=opts.head_cpus, num_gpus=opts.node_gpus, **_NODE_ARGS).node_id
        for _ in range(opts.worker_nodes)], "head_node": cluster.head_node.node_id}

    def run_job() -> None:
        result["exit"] = cli.main(args)

    started = time.monotonic()
    try:
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        # Ray starts nodes only from the main thread (it installs signal handlers), so the job runs in
        # a thread and the nodes join from here while it waits for them.
        job = threading.Thread(target=run_job, daemon=True)
        job.start()
        if opts.gpu_nodes:
            result["waiting_probe"] = _wait_for_a_pending_probe(job, opts.delay_s)
            for _ in range(opts.gpu_nodes if job.is_alive() else 0):
                result["gpu_nodes"].append(cluster.add_node(num_cpus=1, num_gpus=1, **_NODE_ARGS).node_id)
        job.join()
        result["seconds"] = time.monotonic() - started
        print(json.dumps(result))
        return int(result.get("exit", 1))
    finally:
        ray.shutdown()
        cluster.shutdown()


def _wait_for_a_pending_probe(job: threading.Thread, then_s: float) -> dict | None:
    """Until the job waits on a placement group the cluster cannot place yet (its resource probe),
    then `then_s` more; returns that probe's bundles (None if the job ended first)."""
    from ray.util import placement_group_table

    while job.is_alive():
        pending = [pg for pg in placement_group_table().values() if pg["state"] == "PENDING"]
        if pending:
            time.sleep(then_s)
            return {"bundles": list(pending[0]["bundles"].values())}
        time.sleep(0.2)
    return None

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
