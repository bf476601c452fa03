"""Connect to a fresh multi-process Ray cluster (ray.cluster_utils.Cluster) the way `qbatch` connects to
a real one (jobs/runtime/ray_start.init_ray with an address, so the runtime_env ships the package), and
compare what a worker imports with what this driver imports. Run as a subprocess, since a second Ray
cluster cannot share the test session's Ray; the last stdout line is a JSON summary:

    python tests/jobs/runtime/ray_package_probe.py
"""

from __future__ import annotations

import hashlib
import json
import sys

MODULES = ("qbatch", "qbatch.jobs.cli", "qbatch.jobs.runtime.ray_start", "qbatch.pipeline.reranker",
           "qbatch.connectors.rerank_table", "qbatch.common.errors")
BARE = ("jobs", "pipeline", "connectors", "common")


def imported_files() -> dict:
    """Per module: the file it was imported from and the sha256 of that file; plus any bare module."""
    import importlib

    out = {}
    for name in MODULES:
        path = importlib.import_module(name).__file__
        with open(path, "rb") as f:
            out[name] = {"file": path, "sha256": hashlib.sha256(f.read()).hexdigest()}
    return {"modules": out, "bare": sorted(m for m in sys.modules if m.split(".")[0] in BARE)}


def main() -> int:
    import ray
    from ray.cluster_utils import Cluster

    from qbatch.jobs.runtime.ray_start import init_ray

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 96 << 20})
    try:
        init_ray(cluster.address)
        worker = ray.get(ray.remote(num_cpus=1)(imported_files).remote())
        print(json.dumps({"driver": imported_files(), "worker": worker}))
        return 0
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    sys.exit(main())
