"""Connect to Ray: an existing cluster (`--ray-address` or RAY_ADDRESS), shipping this code with a
runtime_env, or a local Ray on a laptop. Only this differs between the two."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("qbatch.ray")

# Never ship these to a cluster: virtualenvs, outputs, caches, local Qdrant data.
RUNTIME_ENV_EXCLUDES = [".venv/", ".git/", "demo-output/", "qbatch-output/", "qdrant-data/", "bench-output/",
                        "**/__pycache__/", ".pytest_cache/", ".hypothesis/", "*.parquet", "*.sqlite"]


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def runtime_env() -> dict:
    """working_dir = this source tree, so cluster workers import the same jobs/pipeline/connectors.
    From a non-editable install there is no source tree to ship (repo_root() would be site-packages):
    then the cluster's image must have the same qbatch installed, and only env vars are sent."""
    env: dict = {"env_vars": {"TOKENIZERS_PARALLELISM": "false"}}
    if (repo_root() / "pyproject.toml").is_file():
        env.update(working_dir=str(repo_root()), excludes=RUNTIME_ENV_EXCLUDES)
    else:
        log.warning("qbatch is not running from a source tree; relying on the cluster image's qbatch")
    return env


def quiet_ray_logs() -> bool:
    """Ray's own INFO lines (dataset progress, "execution finished") show only when qbatch logs at
    DEBUG; its warnings always do. Returns whether they show."""
    import ray.data  # noqa: F401 - importing ray.data configures its logger; set levels after that

    verbose = log.getEffectiveLevel() <= logging.DEBUG
    # Ray's defaults when verbose: INFO on the console; ray.data also keeps DEBUG in its session log file.
    logging.getLogger("ray").setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("ray.data").setLevel(logging.DEBUG if verbose else logging.WARNING)
    return verbose


def init_ray(address: str | None = None) -> None:
    import ray

    quiet_ray_logs()
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        log.info("connecting to Ray cluster at %s", address)
        ray.init(address=address, runtime_env=runtime_env(), log_to_driver=True)
    else:
        # address="local": always a fresh local Ray, as documented; plain ray.init() would silently
        # join any other Ray that happens to run on this machine.
        ray.init(address="local", include_dashboard=False, log_to_driver=True, configure_logging=False)
    ctx = ray.data.DataContext.get_current()
    # On a terminal Ray Data draws progress bars; elsewhere it logs progress at INFO, which
    # quiet_ray_logs hides unless --log-level DEBUG. (Turning them off makes Ray warn on every run.)
    ctx.enable_progress_bars = True
    ctx.print_on_execution_start = False
