"""What every phase of one index run shares: config, clients, the listed source, the collection spec,
the run's state and progress stores, and the report being assembled."""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from qbatch.jobs.index.config import IndexConfig

log = logging.getLogger("qbatch.index")


@dataclass
class IndexRun:
    cfg: IndexConfig
    run_id: str
    client: Any
    files: list
    spec: Any  # qbatch.connectors.collection_guard.CollectionSpec
    tokenizer: Any  # qbatch.pipeline.embedding_tokenizer.EmbeddingTokenizer
    live: str | None  # the collection the alias points at now, if any
    state_store: Any = None
    progress: Any = None
    pools: Any = None
    lock: Any = None
    heartbeat: Any = None  # qbatch.connectors.lock_heartbeat.LockHeartbeat
    collection: str | None = None
    mode: str = "full"
    started: float = field(default_factory=time.perf_counter)
    started_at: float = field(default_factory=time.time)  # the same moment as Unix time, for the actors' clocks
    report: dict = field(default_factory=dict)
    tokenizer_check: Any = None  # TokenizerCheck: the tokenizer loading while Ray starts

    def check_tokenizer(self) -> None:
        """Wait for the tokenizer loaded in the background (jobs/index/tokenizer_check.py); a checkpoint
        whose tokenizer does not load is a config error, raised before anything is written."""
        if self.tokenizer_check is not None:
            self.tokenizer_check.result()

    def tokenizer_snapshot(self) -> str | None:
        """The checked tokenizer as the prep actors rebuild it without transformers; None = they load it."""
        return self.tokenizer_check.snapshot() if self.tokenizer_check is not None else None

    @property
    def alias(self) -> str:
        return self.cfg.qdrant.collection

    @property
    def storage(self):
        return self.cfg.source.storage

    @property
    def out(self) -> str:
        """The output root: `{out}/{alias}/manifests/` and `{out}/{alias}/LOCK` hang below it."""
        return self.cfg.run.output_uri

    @property
    def run_root(self) -> str:
        """`{output_uri}/{alias}`: this alias's runs live in `runs/{run_id}/` below it, beside its manifests."""
        from qbatch.connectors.object_store import join_uri

        return join_uri(self.cfg.run.output_uri, self.alias)

    @property
    def run_folder(self) -> str:
        """`{output_uri}/{alias}/runs/{run_id}`: state, progress, plan, undo log, dead letters, report."""
        from qbatch.connectors.object_store import join_uri

        return join_uri(self.run_root, "runs", self.run_id)

    def creation_spec(self):
        """The spec recorded on a collection this run creates: the guard fields plus run id and time."""
        from qbatch.connectors.collection_guard import CollectionSpec

        return CollectionSpec(dim=self.spec.dim, distance=self.spec.distance, fingerprint={
            **self.spec.fingerprint, "run_id": self.run_id,
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})

    def check_lock(self) -> None:
        """Stop before the next write if the alias lock was lost (connectors/lock_heartbeat.py keeps it
        refreshed from a background thread through every phase)."""
        if self.heartbeat is not None:
            self.heartbeat.check()

    def check_reject_ratio(self, read: int, rejected: int, where: str) -> None:
        """Too many rejects means a broken export: refuse before the index serving search changes."""
        from qbatch.common.errors import RejectRatioExceededError

        ratio = rejected / read if read else 0.0
        if ratio > self.cfg.run.max_reject_ratio:
            raise RejectRatioExceededError(
                f"{rejected} of {read} rows rejected ({ratio:.1%} > run.max_reject_ratio "
                f"{self.cfg.run.max_reject_ratio:.1%}); {where}")
