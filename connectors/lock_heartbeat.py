"""Keeps a RunLock alive from a background thread for as long as a run holds it.

Refreshing between batches is not enough: a hash-only scan, a wait for GPU nodes or a slow gate can
each outlast the lock's TTL, and another run would then take the alias over. The heartbeat refreshes
every third of the TTL whatever the run is doing. If the lock was taken over anyway (a paused VM, a
partition), the thread stops and `check()` raises, so the run stops before its next write."""

from __future__ import annotations

import logging
import threading

from qbatch.common.errors import LockHeldError

log = logging.getLogger("qbatch.lock")


class LockHeartbeat:
    """`with LockHeartbeat(lock):` refreshes `lock` every `every_s` (default: a third of its TTL)."""

    def __init__(self, lock, every_s: float | None = None):
        self.lock = lock
        self.every_s = every_s if every_s is not None else max(0.1, min(60.0, lock.ttl_s / 3))
        self.refreshes = 0
        self.error: LockHeldError | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="qbatch-lock-heartbeat", daemon=True)

    def start(self) -> "LockHeartbeat":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=max(5.0, self.every_s))

    def check(self) -> None:
        """Raise the LockHeldError that stopped the heartbeat, if any."""
        if self.error is not None:
            raise self.error

    def __enter__(self) -> "LockHeartbeat":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.lock.refresh()
                self.refreshes += 1
            except LockHeldError as e:  # someone else holds it now: writing on would be unsafe
                log.error("lost the run lock: %s", e)
                self.error = e
                return
            except Exception as e:  # noqa: BLE001 - a flaky store: keep trying until the TTL runs out
                log.warning("refreshing the run lock failed, retrying in %.0fs: %s: %s", self.every_s,
                            type(e).__name__, e)
