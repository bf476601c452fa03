from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from qbatch.common.errors import LockHeldError
from qbatch.connectors.object_store import read_bytes, write_bytes
from qbatch.connectors.run_lock import LockRecord, RunLock, _iso, process_started


def _write_lock(out: str, alias: str, pid: int, expires_in_s: float, host: str | None = None,
                pid_started: str = "") -> None:
    now = time.time()
    record = LockRecord(host=host or socket.gethostname(), pid=pid, run_id="other-run",
                        acquired_at=_iso(now - 60), expires_at=_iso(now + expires_in_s), token="theirs",
                        pid_started=pid_started)
    write_bytes(f"{out}/{alias}/LOCK", record.to_bytes())


def _lock_json(out: str, alias: str) -> dict | None:
    data = read_bytes(f"{out}/{alias}/LOCK")
    return None if data is None else json.loads(data)


def test_second_acquirer_is_refused_with_holder_and_expiry(tmp_path):
    out = str(tmp_path)
    with RunLock(out, "catalog", "run-1"):
        held = _lock_json(out, "catalog")
        assert held["run_id"] == "run-1" and held["pid"] == os.getpid()
        with pytest.raises(LockHeldError) as err:
            RunLock(out, "catalog", "run-2").acquire()
        assert "run-1" in str(err.value) and held["expires_at"] in str(err.value)
    assert _lock_json(out, "catalog") is None


def test_locks_are_per_alias(tmp_path):
    with RunLock(str(tmp_path), "catalog", "run-1"), RunLock(str(tmp_path), "faq", "run-2") as faq:
        assert faq.held


def test_released_lock_can_be_taken(tmp_path):
    out = str(tmp_path)
    first, second = RunLock(out, "catalog", "run-1"), RunLock(out, "catalog", "run-2")
    first.acquire()
    with pytest.raises(LockHeldError):
        second.acquire()
    first.release()
    assert second.acquire().run_id == "run-2"
    assert _lock_json(out, "catalog")["run_id"] == "run-2"


def test_expired_lock_is_taken_over_even_if_its_process_lives(tmp_path):
    out = str(tmp_path)
    _write_lock(out, "catalog", pid=os.getppid(), expires_in_s=-1)
    record = RunLock(out, "catalog", "run-2").acquire()
    assert record.run_id == "run-2" and _lock_json(out, "catalog")["run_id"] == "run-2"


def test_lock_of_a_dead_process_on_this_host_is_taken_over(tmp_path):
    out = str(tmp_path)
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    dead_pid = int(child.stdout)
    _write_lock(out, "catalog", pid=dead_pid, expires_in_s=600)
    assert RunLock(out, "catalog", "run-2").acquire().run_id == "run-2"


def test_live_other_process_blocks(tmp_path):
    out = str(tmp_path)
    _write_lock(out, "catalog", pid=os.getppid(), expires_in_s=600)
    with pytest.raises(LockHeldError, match="other-run"):
        RunLock(out, "catalog", "run-2").acquire()
    assert _lock_json(out, "catalog")["token"] == "theirs"


def test_recycled_pid_is_taken_over_but_its_true_owner_blocks(tmp_path):
    out, parent = str(tmp_path), os.getppid()
    if not process_started(parent):
        pytest.skip("no /proc on this system")
    _write_lock(out, "catalog", pid=parent, expires_in_s=600, pid_started=process_started(parent))
    with pytest.raises(LockHeldError):
        RunLock(out, "catalog", "run-2").acquire()
    # Same pid, but started at another moment: a restarted container's new pid 1, not the owner.
    _write_lock(out, "catalog", pid=parent, expires_in_s=600, pid_started="old-boot:12345")
    assert RunLock(out, "catalog", "run-3").acquire().run_id == "run-3"
    assert _lock_json(out, "catalog")["pid_started"] == process_started(os.getpid())


def test_dead_pid_on_another_host_blocks_until_expiry(tmp_path):
    out = str(tmp_path)
    _write_lock(out, "catalog", pid=2**22 + 7, expires_in_s=600, host="some-other-host")
    with pytest.raises(LockHeldError, match="some-other-host"):
        RunLock(out, "catalog", "run-2").acquire()


def test_refresh_extends_expiry_and_fails_once_the_lock_is_lost(tmp_path):
    out = str(tmp_path)
    clock = [1_000_000.0]
    lock = RunLock(out, "catalog", "run-1", ttl_s=60, clock=lambda: clock[0])
    first = lock.acquire()
    clock[0] += 50
    refreshed = lock.refresh()
    assert refreshed.expires_at > first.expires_at and refreshed.acquired_at == first.acquired_at
    assert _lock_json(out, "catalog")["expires_at"] == refreshed.expires_at
    # Our clock says we are long expired: a newcomer takes over, and we find out at the next refresh.
    RunLock(out, "catalog", "run-2").acquire()
    with pytest.raises(LockHeldError, match="run-2"):
        lock.refresh()
    lock.release()  # not ours any more: left alone
    assert _lock_json(out, "catalog")["run_id"] == "run-2"


def test_torn_lock_file_blocks_until_a_ttl_has_passed(tmp_path):
    out = str(tmp_path)
    (tmp_path / "catalog").mkdir()
    (tmp_path / "catalog" / "LOCK").write_bytes(b"")
    with pytest.raises(LockHeldError):
        RunLock(out, "catalog", "run-2").acquire()
    later = RunLock(out, "catalog", "run-3", ttl_s=60, clock=lambda: time.time() + 120)
    assert later.acquire().run_id == "run-3"


def test_object_store_lock_round_trip(s3_bucket, s3_storage):
    out = f"s3://{s3_bucket}/index"
    lock = RunLock(out, "catalog", "run-1", storage=s3_storage)
    with lock:
        assert json.loads(read_bytes(f"{out}/catalog/LOCK", s3_storage))["run_id"] == "run-1"
        with pytest.raises(LockHeldError, match="run-1"):
            RunLock(out, "catalog", "run-2", storage=s3_storage).acquire()
        lock.refresh()
    assert read_bytes(f"{out}/catalog/LOCK", s3_storage) is None
    assert RunLock(out, "catalog", "run-2", storage=s3_storage).acquire().run_id == "run-2"


@pytest.mark.parametrize("stale_lock_present", [False, True])
def test_racing_acquirers_on_local_disk_have_exactly_one_winner(tmp_path, stale_lock_present):
    import threading

    out = str(tmp_path)
    if stale_lock_present:
        _write_lock(out, "catalog", pid=os.getppid(), expires_in_s=-1)
    barrier, outcomes = threading.Barrier(6), []

    def contend(n: int) -> None:
        lock = RunLock(out, "catalog", f"run-{n}")
        barrier.wait()
        try:
            lock.acquire()
            outcomes.append(f"run-{n}")
        except LockHeldError:
            outcomes.append("refused")

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o != "refused"]
    assert len(outcomes) == 6 and len(winners) == 1
    assert _lock_json(out, "catalog")["run_id"] == winners[0]
