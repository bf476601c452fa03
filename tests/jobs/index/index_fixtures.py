"""Helpers shared by the index-job tests: a product-like corpus made of real text (standard-library
docstrings), configs, running the real CLI in-process or as a subprocess, and reading Qdrant back."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tests.fixtures.stdlib_docstrings import stdlib_docstring_pairs

REPO = Path(__file__).resolve().parents[3]


def catalog_rows(n: int, seed: int = 0) -> list[dict]:
    """n product-like rows: title = a docstring's summary, description = its body."""
    pairs = stdlib_docstring_pairs(limit=5000)
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        p = pairs[i % len(pairs)]
        rows.append({"id": f"d{i:05d}", "title": p["query"], "description": p["document"],
                     "price": round(rng.uniform(1, 500), 2), "lang": rng.choice(["en", "de", "fr"])})
    return rows


def write_corpus(root: Path, rows: list[dict], n_files: int, formats=("parquet", "jsonl")) -> list[Path]:
    """Split rows over n_files files, alternating formats; returns the paths in listing order."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    per = -(-len(rows) // n_files)
    for k in range(n_files):
        part = rows[k * per:(k + 1) * per]
        fmt = formats[k % len(formats)]
        path = root / f"part-{k:03d}.{fmt}"
        if fmt == "parquet":
            pq.write_table(pa.Table.from_pylist(part), path)
        else:
            path.write_text("".join(json.dumps(r) + "\n" for r in part))
        paths.append(path)
    return paths


def index_config(tmp: Path, source: str, model: Path, alias: str = "catalog", run_id: str | None = "r1",
                 mode: str = "full", extra: str = "") -> Path:
    """A config file for `qbatch index`; run_id None leaves the run id to be derived."""
    cfg = tmp / f"index-{alias}-{run_id or mode}.toml"
    cfg.write_text(f"""
[source]
uri = "{source}"
[columns]
id = "id"
text_template = "{{title}}\\n{{description}}"
payload = ["price"]
lang = "lang"
[embed]
model = "{model}"
batch_size = 64
[qdrant]
path = "{tmp / 'qdrant'}"
collection = "{alias}"
upsert_batch_size = 128
[run]
output_uri = "{tmp / 'out'}"
{f'run_id = "{run_id}"' if run_id else ""}
mode = "{mode}"
progress = false
{extra}
""")
    return cfg


def run_cli(args: list[str]) -> int:
    from qbatch.jobs import cli

    return cli.main([str(a) for a in args])


def run_cli_subprocess(args: list[str], env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "qbatch.jobs.cli", *map(str, args)], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def start_index_run(cfg, run_id: str, env: dict, *extra: str) -> subprocess.Popen:
    """`qbatch index` in the background, in its own process group (so a test can SIGKILL it with its Ray)."""
    return subprocess.Popen([sys.executable, "-m", "qbatch.jobs.cli", "index", "--config", str(cfg), "--set",
                             f"run.run_id={run_id}", *extra], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO), **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


@contextlib.contextmanager
def qdrant_at(path: Path):
    """A local-mode client on `path`, waiting (like the job does) while a crashed run's writer actor lets go."""
    from qbatch.connectors.qdrant_config import QdrantConfig
    from qbatch.connectors.qdrant_connection import connect

    client = connect(QdrantConfig(path=str(path)))
    try:
        yield client
    finally:
        client.close()


def wait_for(predicate, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Poll `predicate` until true; fail if `proc` ends first or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended early ({proc.returncode}): {proc.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.5)


def kill_after_writes(proc: subprocess.Popen, files_dir, timeout: float = 500) -> None:
    """SIGKILL the run's process group once a file is checkpointed: its points were acknowledged."""
    deadline = time.monotonic() + timeout
    try:
        while not (files_dir.exists() and list(files_dir.glob("*.done.json"))):
            if proc.poll() is not None:
                raise AssertionError(f"run ended early ({proc.returncode}): {proc.stderr.read()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError("no file was checkpointed in time")
            time.sleep(0.3)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def all_points(client, collection: str) -> dict[str, tuple[list[float], dict]]:
    """point id -> (vector, payload) for every point."""
    out, offset = {}, None
    while True:
        points, offset = client.scroll(collection, limit=512, offset=offset, with_vectors=True, with_payload=True)
        for p in points:
            out[str(p.id)] = (list(p.vector), dict(p.payload))
        if offset is None:
            return out


def run_dir(tmp: Path, run_id: str, alias: str = "catalog") -> Path:
    """Where `index_config`'s runs keep their state, progress, dead letters and report."""
    return tmp / "out" / alias / "runs" / run_id


def read_report(tmp: Path, run_id: str, alias: str = "catalog") -> dict:
    return json.loads((run_dir(tmp, run_id, alias) / "report.json").read_text())
