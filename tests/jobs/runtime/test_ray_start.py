"""A cluster worker runs the driver's own `qbatch` package, shipped with the runtime_env, whatever the
worker's image or current folder holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from qbatch.jobs.runtime import ray_start

PROBE = Path(__file__).with_name("ray_package_probe.py")


def test_runtime_env_ships_the_package_under_its_own_name_and_nothing_else():
    env = ray_start.runtime_env()
    assert "working_dir" not in env and env["env_vars"]["TOKENIZERS_PARALLELISM"] == "false"
    [shipped] = map(Path, env["py_modules"])
    assert shipped.name == "qbatch" and (shipped / "__init__.py").is_file()
    for name in ("jobs/cli.py", "pipeline/reranker.py", "connectors/rerank_table.py", "common/errors.py"):
        assert (shipped / name).is_file(), name
    assert not list(shipped.rglob("__pycache__")) and "**/__pycache__/" in env["excludes"]


def test_a_cluster_worker_imports_the_same_files_as_the_driver_even_beside_decoy_packages(tmp_path):
    for bare in ("jobs", "pipeline", "connectors", "common"):  # a user's folder with generic package names
        (tmp_path / bare).mkdir()
        (tmp_path / bare / "__init__.py").write_text(f"raise ImportError('decoy {bare} imported')\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS")}
    out = subprocess.run([sys.executable, str(PROBE)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    driver, worker = summary["driver"]["modules"], summary["worker"]["modules"]
    assert {m: d["sha256"] for m, d in worker.items()} == {m: d["sha256"] for m, d in driver.items()}
    # The worker's copy is the shipped one (one `qbatch` folder of Ray's), not the checkout or an install.
    root = Path(worker["qbatch"]["file"]).parent
    assert root.name == "qbatch" and all(Path(d["file"]).is_relative_to(root) for d in worker.values())
    assert all(worker[m]["file"] != driver[m]["file"] for m in driver)
    assert summary["driver"]["bare"] == [] and summary["worker"]["bare"] == []
