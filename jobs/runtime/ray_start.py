"""Connect to Ray: an existing cluster (`--ray-address` or RAY_ADDRESS), shipping this process's `qbatch`
package with a runtime_env, or a local Ray on a laptop. Only this differs between the two."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger("qbatch.ray")

# Never ship these with the package: caches and compiled files.
RUNTIME_ENV_EXCLUDES = ["**/__pycache__/", "*.pyc"]
_FOLDERS = ("jobs", "pipeline", "connectors", "common")  # mapped below `qbatch` by pyproject.toml
_staged: list[Path] = []


def package_dir() -> Path:
    """The folder of the `qbatch` package this process imported (loaded before any of its modules)."""
    import sys

    return Path(sys.modules["qbatch"].__file__).resolve().parent


def shipped_package() -> Path:
    """A folder named `qbatch` holding exactly the code this process runs. From an installed qbatch
    that is the package itself; from a source checkout (an editable install maps jobs/, pipeline/,
    connectors/ and common/ below `qbatch`) the mapped folders are copied into a temporary `qbatch/`."""
    import importlib

    here = package_dir()
    folders = {name: Path(importlib.import_module(f"qbatch.{name}").__file__).resolve().parent for name in _FOLDERS}
    if all(folder == here / name for name, folder in folders.items()):
        return here
    staging = Path(tempfile.mkdtemp(prefix="qbatch-ship-")) / "qbatch"
    shutil.copytree(here, staging, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name, folder in folders.items():
        shutil.copytree(folder, staging / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if not _staged:
        atexit.register(lambda: [shutil.rmtree(p.parent, ignore_errors=True) for p in _staged])
    _staged.append(staging)
    return staging


def runtime_env() -> dict:
    """Ship the driver's `qbatch` package to every cluster worker as a Ray `py_modules` entry, so workers
    import the code the driver runs, never the cluster image's qbatch of another version. Only the
    package travels: no working_dir, so no bare `jobs`/`pipeline` folders land on a worker's sys.path."""
    return {"env_vars": {"TOKENIZERS_PARALLELISM": "false"}, "py_modules": [str(shipped_package())],
            "excludes": RUNTIME_ENV_EXCLUDES}


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
