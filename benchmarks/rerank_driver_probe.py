"""Run one `qbatch rerank` from a given source tree and report the driver process's own cost, for
benchmarks/bench_rerank_job.py. The tree's mapped folders are staged as one `qbatch/` package, put first
on this process's sys.path and shipped to its local Ray's workers (runtime_env py_modules), so an older
commit's job runs its own code everywhere. The last stdout line is JSON:

    python benchmarks/rerank_driver_probe.py --root /tmp/old-tree -- --config rerank.toml

cpu_s: this process's user + system CPU seconds (/proc/self/stat), the driver alone (Ray's workers are
other processes); peak_rss_mb: its VmHWM (/proc/self/status); wall_s: from process start to the end
of the run (the commit and the report)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

STARTED = time.monotonic()
FOLDERS = ("jobs", "pipeline", "connectors", "common")


def stage(root: Path) -> Path:
    """A folder holding `qbatch/` as pyproject maps it: public_api/ plus the code folders below it."""
    out = Path(tempfile.mkdtemp(prefix="qbatch-probe-"))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(root / "public_api", out / "qbatch", ignore=ignore)
    for name in FOLDERS:
        shutil.copytree(root / name, out / "qbatch" / name, ignore=ignore)
    return out


def process_start_offset_s() -> float:
    """Seconds this process ran before this module started (interpreter start-up)."""
    ticks = os.sysconf("SC_CLK_TCK")
    start = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return max(0.0, uptime - start - (time.monotonic() - STARTED))


def cpu_seconds() -> float:
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str]) -> int:
    root = Path(argv[argv.index("--root") + 1]).resolve()
    qbatch_args = argv[argv.index("--") + 1:]
    staged = stage(root)
    sys.path.insert(0, str(staged))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import ray

    ray.init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"py_modules": [str(staged / "qbatch")], "env_vars": {"TOKENIZERS_PARALLELISM": "false"}})
    from qbatch.jobs import cli

    code = cli.main(["rerank", *qbatch_args])
    wall = time.monotonic() - STARTED + process_start_offset_s()
    summary = {"exit": code, "cpu_s": cpu_seconds(), "peak_rss_mb": peak_rss_mb(), "wall_s": wall,
               "root": str(root)}
    ray.shutdown()
    shutil.rmtree(staged, ignore_errors=True)
    print(json.dumps(summary))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
