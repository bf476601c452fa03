"""The lock heartbeat keeps a short-TTL lock alive from a background thread, and reports a takeover."""

from __future__ import annotations

import json
import time

import pytest

from qbatch.common.errors import LockHeldError
from qbatch.connectors.lock_heartbeat import LockHeartbeat
from qbatch.connectors.object_store import read_bytes, write_bytes
from qbatch.connectors.run_lock import RunLock


def test_a_short_ttl_lock_outlives_its_ttl_while_the_heartbeat_runs(tmp_path):
    out = str(tmp_path)
    with RunLock(out, "catalog", "run-1", ttl_s=3.0) as lock, LockHeartbeat(lock) as beat:
        time.sleep(4.5)  # longer than the TTL, with no refresh from this thread
        with pytest.raises(LockHeldError, match="run-1"):
            RunLock(out, "catalog", "run-2", ttl_s=3.0).acquire()
        assert beat.refreshes >= 1 and beat.error is None
    assert read_bytes(f"{out}/catalog/LOCK") is None  # released on exit


def test_a_lost_lock_stops_the_heartbeat_and_check_raises(tmp_path):
    out = str(tmp_path)
    with RunLock(out, "catalog", "run-1", ttl_s=0.9) as lock:
        beat = LockHeartbeat(lock).start()
        record = json.loads(read_bytes(f"{out}/catalog/LOCK"))
        write_bytes(f"{out}/catalog/LOCK", json.dumps({**record, "token": "someone-else",
                                                       "run_id": "intruder"}).encode())
        deadline = time.monotonic() + 30
        while beat.error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(LockHeldError):
            beat.check()
        beat.stop()
