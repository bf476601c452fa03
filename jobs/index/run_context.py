"""What every phase of one index run shares: config, clients, the listed source, the collection spec,
the run's state and progress stores, and the report being assembled."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from jobs.index.config import IndexConfig

log = logging.getLogger("qbatch.index")


def config_fingerprint(cfg: IndexConfig) -> str:
    """What a resumed run must share with the attempt it resumes (run id and display flags excluded)."""
    data = cfg.model_dump(mode="json")
    data["run"].pop("run_id", None)
    data["run"].pop("progress", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


@dataclass
class IndexRun:
    cfg: IndexConfig
    run_id: str
    client: Any
    files: list
    spec: Any  # connectors.collection_guard.CollectionSpec
    tokenizer: Any  # pipeline.embedding_tokenizer.EmbeddingTokenizer
    live: str | None  # the collection the alias points at now, if any
    state_store: Any = None
    progress: Any = None
    pools: Any = None
    lock: Any = None
    collection: str | None = None
    mode: str = "full"
    started: float = field(default_factory=time.perf_counter)
    report: dict = field(default_factory=dict)

    @property
    def alias(self) -> str:
        return self.cfg.qdrant.collection

    @property
    def storage(self):
        return self.cfg.source.storage

    @property
    def out(self) -> str:
        return self.cfg.run.output_uri

    def creation_spec(self):
        """The spec recorded on a collection this run creates: the guard fields plus run id and time."""
        from connectors.collection_guard import CollectionSpec

        return CollectionSpec(dim=self.spec.dim, distance=self.spec.distance, fingerprint={
            **self.spec.fingerprint, "run_id": self.run_id,
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})

    _last_refresh: float = 0.0

    def refresh_lock(self, every_s: float = 60.0) -> None:
        """Extend the alias lock; called per batch, so it refreshes at most every `every_s` seconds
        (the lock's TTL is 15 minutes: a long load must not let it lapse)."""
        now = time.monotonic()
        if self.lock is not None and now - self._last_refresh >= every_s:
            self.lock.refresh()
            self._last_refresh = now

    def check_reject_ratio(self, read: int, rejected: int, where: str) -> None:
        """Too many rejects means a broken export: refuse before the index serving search changes."""
        from common.errors import RejectRatioExceededError

        ratio = rejected / read if read else 0.0
        if ratio > self.cfg.run.max_reject_ratio:
            raise RejectRatioExceededError(
                f"{rejected} of {read} rows rejected ({ratio:.1%} > run.max_reject_ratio "
                f"{self.cfg.run.max_reject_ratio:.1%}); {where}")
