"""What names an index run. A run id names one run of one mode over one input, so the default id is
derived from what the run will do: `{mode}-{date}-{hash}`, the hash covering the config fingerprint
and the source listing (each file's URI, size and modification time).

- The same inputs give the same id: a retry after a crash resumes, and rerunning a finished run is a
  true no-op.
- Changed inputs give a new id, even on the same day and in the same mode: a weekly full run and the
  nightly incremental run of the same day never share one.
- A scheduler's id (`run.run_id`) takes precedence, so the scheduler's retries stay idempotent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

from qbatch.common.errors import ConfigError
from qbatch.jobs.index.config import IndexConfig


def config_fingerprint(cfg: IndexConfig) -> str:
    """What a resumed run must share with the attempt it resumes (run id and display flags excluded)."""
    data = cfg.model_dump(mode="json")
    data["run"].pop("run_id", None)
    data["run"].pop("progress", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def listing_digest(files) -> str:
    """sha256 of the source listing: URI, size and modification time of every file, in listing order."""
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.uri}\t{f.size}\t{f.modified_ns}\n".encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def derived_run_id(mode: str, fingerprint: str, files, today: dt.date | None = None) -> str:
    """`{mode}-{YYYYMMDD}-{10 hex}` for this config over this listing."""
    day = today or dt.datetime.now(dt.timezone.utc).date()
    digest = hashlib.sha256(f"{fingerprint}\n{listing_digest(files)}".encode()).hexdigest()[:10]
    return f"{mode}-{day:%Y%m%d}-{digest}"


def resolve_run_id(cfg: IndexConfig, files, today: dt.date | None = None) -> str:
    """The scheduler's `run.run_id` if given, else the derived id."""
    return cfg.run.run_id or derived_run_id(cfg.run.mode, config_fingerprint(cfg), files, today)


def refuse_reuse(run_id: str, previous, mode: str, fingerprint: str) -> None:
    """A finished run id reused with another mode or config is an error naming both, never a no-op."""
    before_mode = previous.details.get("requested_mode", previous.mode)
    if before_mode != mode:
        raise ConfigError(f"run id {run_id} already finished a {before_mode!r} run; this is a {mode!r} run. "
                          "A run id names one run of one mode: give this run its own run.run_id "
                          "(or leave it unset to derive one)")
    if previous.config_fingerprint != fingerprint:
        raise ConfigError(f"run id {run_id} already finished with config {previous.config_fingerprint[:12]}; "
                          f"this config is {fingerprint[:12]}. A run id names one run over one input: give this "
                          "run its own run.run_id (or leave it unset to derive one)")
