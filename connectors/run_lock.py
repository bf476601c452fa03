"""One run at a time per alias: a lock object at `{output_uri}/{alias}/LOCK`, on local disk or an
object store, so two nightly jobs never rebuild the same index at once.

The lock is JSON (host, pid, run_id, acquired_at, expires_at, token, pid_started). It can be taken
when it is missing, past its expiry, or left by a dead process on this same host (a pid that is gone,
or that now belongs to a process started later than the owner). A crashed job therefore
blocks the next one for at most `ttl_s`, or not at all when rerun on the same machine.

Local disk: a fresh lock is created with O_EXCL; a takeover writes a temp file, `os.replace`s it in
and re-reads it. Every change to an existing lock (takeover, refresh, release) also runs under an
flock on `LOCK.guard`, so two takers on one host cannot both believe they won.

Object stores: pyarrow has no portable create-if-absent, so we write, read back and check the token.
Two runs starting within the same few milliseconds can both read "missing", both write, and the
first to read back may see its own record before the second write lands. The window is one PUT
round trip; schedulers start a nightly job once, so we accept it rather than add a second backend.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import pyarrow.fs as pafs

from qbatch.common.errors import LockHeldError
from qbatch.connectors.object_store import filesystem_for, join_uri, read_bytes, write_bytes
from qbatch.connectors.source_config import ObjectStoreOptions

log = logging.getLogger("qbatch.run_lock")


def _iso(epoch_s: float) -> str:
    return dt.datetime.fromtimestamp(epoch_s, dt.timezone.utc).isoformat(timespec="seconds")


def _epoch(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).timestamp()


@dataclass(frozen=True)
class LockRecord:
    """What the lock object says: who holds it and until when."""

    host: str
    pid: int
    run_id: str
    acquired_at: str
    expires_at: str
    token: str  # unique per RunLock object: the only thing that proves ownership
    pid_started: str = ""  # boot id + start tick of `pid`, so a recycled pid is not mistaken for the owner

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> "LockRecord | None":
        """The record, or None when the bytes are not a lock record (torn or foreign file)."""
        try:
            raw = json.loads(data)
            return cls(host=str(raw["host"]), pid=int(raw["pid"]), run_id=str(raw["run_id"]),
                       acquired_at=str(raw["acquired_at"]), expires_at=str(raw["expires_at"]),
                       token=str(raw.get("token", "")), pid_started=str(raw.get("pid_started", "")))
        except (ValueError, KeyError, TypeError):
            return None

    def describe(self) -> str:
        return f"run {self.run_id} (host {self.host}, pid {self.pid}) until {self.expires_at}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    if pid <= 0:  # 0 and -1 would address process groups, not a process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def process_started(pid: int) -> str:
    """'{boot id}:{start tick}' of a live Linux process, '' where /proc cannot tell. A restarted container
    keeps its hostname and often runs the job as pid 1 again; this tells the two incarnations apart."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # the command name may hold spaces and ')'
        return f"{boot}:{fields[19]}"  # field 22 (starttime), counted from field 3 (state)
    except (OSError, IndexError):
        return ""


def stale_reason(record: LockRecord, now: float, host: str) -> str | None:
    """Why a lock may be taken over (expired, dead owner), or None when it is held."""
    if _epoch(record.expires_at) <= now:
        return f"expired at {record.expires_at}"
    if record.host != host:
        return None
    if not pid_alive(record.pid):
        return f"its process {record.pid} on {host} is gone"
    if record.pid_started and process_started(record.pid) not in ("", record.pid_started):
        return f"its process {record.pid} on {host} is gone (the pid now belongs to another process)"
    return None


class RunLock:
    """`with RunLock(output_uri, alias, run_id):` holds the alias for one run; `refresh()` keeps it."""

    def __init__(self, output_uri: str, alias: str, run_id: str, storage: ObjectStoreOptions | None = None,
                 ttl_s: float = 900, clock: Callable[[], float] = time.time):
        self.uri = join_uri(output_uri, alias, "LOCK")
        self.run_id = run_id
        self.ttl_s = ttl_s
        self._storage = storage
        self._clock = clock
        self._host = socket.gethostname()
        self._token = uuid.uuid4().hex
        fs, self._path = filesystem_for(self.uri, storage)
        self._local = isinstance(fs, pafs.LocalFileSystem)
        self.held = False

    def acquire(self) -> LockRecord:
        """Take the lock, or raise LockHeldError naming the holder, its run id and its expiry."""
        if self._local:
            os.makedirs(os.path.dirname(self._path), exist_ok=True)
            if self._create_exclusive():
                return self._won()
        with self._guard():
            current = self._read()
            if current is not None:
                self._check_takeover(current)
            self._put(self._record())
            mine = self._read()
            if mine is None or mine.token != self._token:
                holder = mine.describe() if mine else "another run"
                raise LockHeldError(f"lock {self.uri} was taken at the same moment by {holder}; "
                                    "wait for that run or retry later")
        return self._won()

    def refresh(self) -> LockRecord:
        """Push the expiry `ttl_s` from now; raises LockHeldError if the lock is no longer ours."""
        with self._guard():
            held = self._require_ownership("refresh")
            record = self._record(acquired_at=held.acquired_at)
            self._put(record)
        return record

    def release(self) -> None:
        """Delete the lock if we still own it; someone else's lock is left alone (and logged)."""
        if not self.held:
            return
        with self._guard():
            current = self._read()
            if current is not None and current.token == self._token:
                fs, path = filesystem_for(self.uri, self._storage)
                fs.delete_file(path)
            else:
                log.warning("not releasing %s: it is now held by %s", self.uri,
                            current.describe() if current else "nobody")
        self.held = False

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _won(self) -> LockRecord:
        self.held = True
        record = self._read()
        assert record is not None
        log.info("acquired %s for run %s until %s", self.uri, self.run_id, record.expires_at)
        return record

    def _record(self, acquired_at: str | None = None) -> LockRecord:
        now = self._clock()
        return LockRecord(host=self._host, pid=os.getpid(), run_id=self.run_id,
                          acquired_at=acquired_at or _iso(now),
                          expires_at=_iso(now + self.ttl_s), token=self._token,
                          pid_started=process_started(os.getpid()))

    def _check_takeover(self, current: LockRecord) -> None:
        if current.token == self._token:
            return
        reason = stale_reason(current, self._clock(), self._host)
        if reason is None:
            raise LockHeldError(f"{self.uri} is held by {current.describe()}; wait for that run to finish, "
                                f"or delete the lock if you are sure it is dead")
        log.warning("taking over %s from %s: %s", self.uri, current.describe(), reason)

    def _require_ownership(self, action: str) -> LockRecord:
        current = self._read()
        if current is None or current.token != self._token:
            holder = current.describe() if current else "nobody (it was deleted)"
            self.held = False
            raise LockHeldError(f"cannot {action} {self.uri} for run {self.run_id}: it is now held by {holder}")
        return current

    def _create_exclusive(self) -> bool:
        try:
            fd = os.open(self._path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(self._record().to_bytes())
        return True

    def _read(self) -> LockRecord | None:
        data = read_bytes(self.uri, self._storage)
        if data is None:
            return None
        record = LockRecord.from_bytes(data)
        if record is None:
            # A torn write (crash between O_EXCL create and write): stale once it is older than a TTL.
            record = LockRecord(host="?", pid=-1, run_id="?", acquired_at="?", token="",
                                expires_at=_iso(self._mtime() + self.ttl_s))
        return record

    def _mtime(self) -> float:
        fs, path = filesystem_for(self.uri, self._storage)
        mtime = fs.get_file_info(path).mtime
        return mtime.timestamp() if mtime is not None else 0.0

    def _put(self, record: LockRecord) -> None:
        # write_bytes replaces through a temp file on local disk and PUTs whole objects elsewhere.
        write_bytes(self.uri, record.to_bytes(), self._storage)

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        if not self._local:
            yield
            return
        os.makedirs(os.path.dirname(self._path), exist_ok=True)
        with open(f"{self._path}.guard", "a") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)  # held for a few file operations only
            try:
                yield
            finally:
                fcntl.flock(guard, fcntl.LOCK_UN)
