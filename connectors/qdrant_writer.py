"""Batched, retried writes to one Qdrant collection. Every write is idempotent (points are keyed by
deterministic ids), so a request whose answer was lost can simply be sent again. Transient failures
are retried with exponential backoff and full jitter; anything else fails at once."""

from __future__ import annotations

import collections
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from functools import partial
from typing import Any, Callable, TypeVar

import grpc
import httpx
import numpy as np
from qdrant_client import QdrantClient
from qdrant_client.http import models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from qbatch.common.errors import SinkRejectedError, SinkUnreachableError
from qbatch.connectors.qdrant_config import QdrantConfig

T = TypeVar("T")

# 408/429 and 5xx mean "not now"; every other 4xx means "never", and retrying it only delays the news.
_TRANSIENT_HTTP = frozenset({408, 429})
# RESOURCE_EXHAUSTED is left out on purpose: gRPC also uses it for "message too large", which no retry fixes.
_TRANSIENT_GRPC = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


def is_transient(exc: BaseException) -> bool:
    """True for failures a later identical request may not hit: timeouts, lost connections, 5xx, 429."""
    if isinstance(exc, UnexpectedResponse):
        return exc.status_code is None or exc.status_code in _TRANSIENT_HTTP or exc.status_code >= 500
    if isinstance(exc, ResponseHandlingException):
        # qdrant-client wraps both transport errors and response-parsing errors in this one type.
        return is_transient(exc.source)
    if isinstance(exc, grpc.RpcError) and callable(getattr(exc, "code", None)):
        return exc.code() in _TRANSIENT_GRPC
    if isinstance(exc, httpx.UnsupportedProtocol):
        return False
    return isinstance(exc, (httpx.TransportError, ConnectionError, TimeoutError))


@dataclass
class WriterStats:
    """Additive counters; merge the stats of several writers with `+`."""

    points_written: int = 0
    requests: int = 0  # writes sent (upserts, payload updates, deletes), retries included
    retries: int = 0  # of writes and undo reads alike
    duplicates_collapsed: int = 0
    undo_reads: int = 0  # an in-place run's reads of before-images (connectors/undo_log.py), retries included

    def __add__(self, other: "WriterStats") -> "WriterStats":
        return WriterStats(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


def last_wins(ids: list[str]) -> list[int]:
    """Positions to keep so each id appears once, at its last occurrence, in the original order."""
    seen: set[str] = set()
    keep = []
    for i in range(len(ids) - 1, -1, -1):
        if ids[i] not in seen:
            seen.add(ids[i])
            keep.append(i)
    return keep[::-1]


class PointWriter:
    """Buffers points and upserts them `batch_size` at a time with wait=True.

    `parallel > 1` (server mode only; local mode allows one writer) keeps up to that many upserts in
    flight from a thread pool; `flush()` returns only once every one of them was acknowledged, so a
    caller that checkpoints after flush() never marks unwritten points as done."""

    def __init__(self, client: QdrantClient, collection: str, batch_size: int = 256, max_retries: int = 6, *,
                 base_delay_s: float = 0.5, max_delay_s: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep, seed: int | None = None, parallel: int = 1,
                 undo=None):
        if batch_size < 1 or max_retries < 1:
            raise ValueError(f"batch_size and max_retries must be >= 1, got {batch_size} and {max_retries}")
        self.client, self.collection = client, collection
        self.undo = undo  # qbatch.connectors.undo_log.UndoLog: before-images saved before every write of a live collection
        self.batch_size, self.max_retries = batch_size, max_retries
        self.base_delay_s, self.max_delay_s = base_delay_s, max_delay_s
        self.counters = WriterStats()
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._ids: list[str] = []
        self._vectors: list[np.ndarray] = []
        self._payloads: list[dict[str, Any]] = []
        self._tags: list[str | None] = []
        self._acked: collections.Counter = collections.Counter()  # tag -> points Qdrant acknowledged
        self._batches = 0
        self._closed = False
        self.parallel = max(1, int(parallel))
        self._pool = ThreadPoolExecutor(self.parallel, thread_name_prefix="qdrant-writer") if self.parallel > 1 else None
        self._inflight: list[Future] = []
        self._lock = threading.Lock()

    def stats(self) -> dict[str, int]:
        """The counters as a plain dict, for the run report."""
        return asdict(self.counters)

    @classmethod
    def from_config(cls, client: QdrantClient, cfg: QdrantConfig, collection: str | None = None,
                    **kwargs: Any) -> "PointWriter":
        return cls(client, collection or cfg.collection, cfg.upsert_batch_size, cfg.max_retries,
                   parallel=cfg.parallel_writers, **kwargs)

    def _call(self, fn: Callable[[], T], what: str, counter: str = "requests") -> T:
        """fn() with retries on transient errors; SinkUnreachableError naming `what` once they run out.
        Each try counts in `counter`: "requests" for writes, "undo_reads" for reading before-images."""
        for attempt in range(1, self.max_retries + 1):
            with self._lock:
                setattr(self.counters, counter, getattr(self.counters, counter) + 1)
            try:
                return fn()
            except Exception as e:
                if not is_transient(e):
                    raise SinkRejectedError(f"Qdrant rejected {what} in collection {self.collection!r}: "
                                      f"{type(e).__name__}: {e}") from e
                if attempt == self.max_retries:
                    raise SinkUnreachableError(
                        f"gave up on {what} in collection {self.collection!r} after {attempt} tries; last "
                        f"error: {type(e).__name__}: {e}. Earlier batches are written; a rerun rewrites "
                        "the same ids, so it is safe to retry the job.") from e
                with self._lock:
                    self.counters.retries += 1
                # Full jitter: many writers that failed together must not all come back together.
                self._sleep(self._rng.uniform(0.0, min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))))
        raise AssertionError("unreachable")

    def write(self, ids: list[str], vectors: np.ndarray, payloads: list[dict[str, Any]],
              tags: list[str | None] | None = None) -> int:
        """Buffer the points; returns how many points this call upserted (full batches only). `tags` (one
        per point, e.g. its input file) group the acknowledgements that `take_acknowledged` hands out."""
        if self._closed:
            raise RuntimeError("PointWriter is closed")
        if len(ids) == 0 and len(vectors) == 0 and len(payloads) == 0:
            return 0  # an empty Arrow batch arrives as a 1-D empty array
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or not len(ids) == len(vectors) == len(payloads):
            raise ValueError(f"need parallel ids/vectors/payloads; got {len(ids)} ids, vectors of shape "
                             f"{vectors.shape} and {len(payloads)} payloads")
        bad = ~np.isfinite(vectors).all(axis=1)
        if bad.any():
            shown = [ids[i] for i in np.flatnonzero(bad)[:5]]
            raise ValueError(f"{int(bad.sum())} vectors are not finite (first ids: {shown}); they are never written")
        self._ids.extend(ids)
        self._vectors.extend(vectors)
        self._payloads.extend(payloads)
        self._tags.extend(tags if tags is not None else [None] * len(ids))
        written = 0
        while len(self._ids) >= self.batch_size:
            written += self._send(self.batch_size)
        return written

    def flush(self) -> int:
        """Upsert everything buffered and wait for every request in flight; returns the points sent."""
        written = 0
        while self._ids:
            written += self._send(min(self.batch_size, len(self._ids)))
        self._drain(0)
        return written

    def close(self) -> None:
        """Flush and refuse further writes. The client stays open: it belongs to the caller."""
        if not self._closed:
            try:
                self.flush()
            finally:
                self._closed = True
                if self._pool is not None:
                    self._pool.shutdown(wait=True)

    def __enter__(self) -> "PointWriter":
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()

    def take_acknowledged(self, tag: str | None) -> int:
        """Points of `tag` that Qdrant acknowledged since the last call for it (call after flush())."""
        with self._lock:
            return self._acked.pop(tag, 0)

    def _send(self, n: int) -> int:
        ids, vectors, payloads = self._ids[:n], self._vectors[:n], self._payloads[:n]
        keep = last_wins(ids)
        self.counters.duplicates_collapsed += n - len(keep)
        tags = [self._tags[i] for i in keep]
        ids = [ids[i] for i in keep]
        batch = models.Batch(ids=ids, vectors=np.stack([vectors[i] for i in keep]).tolist(),
                             payloads=[payloads[i] for i in keep])
        self._batches += 1
        what = f"upsert batch {self._batches} ({len(ids)} points, ids {ids[0]} .. {ids[-1]})"
        self._capture(ids, what)
        if self._pool is None:
            self._upsert(batch, what, tags)
            # Drop from the buffer only once Qdrant has the batch: a failed batch is still there to inspect.
            del self._ids[:n], self._vectors[:n], self._payloads[:n], self._tags[:n]
            return len(ids)
        del self._ids[:n], self._vectors[:n], self._payloads[:n], self._tags[:n]  # the request owns the batch now
        self._inflight.append(self._pool.submit(self._upsert, batch, what, tags))
        if len(self._inflight) >= 2 * self.parallel:  # bound memory: wait for the oldest requests
            self._drain(self.parallel)
        return len(ids)

    def _upsert(self, batch: models.Batch, what: str, tags: list[str | None]) -> None:
        result = self._call(partial(self.client.upsert, self.collection, points=batch, wait=True), what)
        status = getattr(getattr(result, "status", None), "value", getattr(result, "status", None))
        if status != "completed":  # wait=True answers only once applied; anything else is no acknowledgement
            raise SinkUnreachableError(f"Qdrant answered {what} in collection {self.collection!r} with status "
                                       f"{status!r}, not 'completed'; a rerun rewrites the same ids")
        with self._lock:
            self.counters.points_written += len(tags)
            self._acked.update(tags)

    def _drain(self, keep: int) -> None:
        """Wait until at most `keep` requests are in flight; a failed request raises its error here."""
        while len(self._inflight) > keep:
            self._inflight.pop(0).result()

    def set_payload_many(self, updates: list[tuple[dict[str, Any], list[str]]]) -> int:
        """Merge each payload into its points, `batch_size` operations per request; returns operations sent."""
        for start in range(0, len(updates), self.batch_size):
            part = updates[start:start + self.batch_size]
            ops = [models.SetPayloadOperation(set_payload=models.SetPayload(payload=p, points=list(pids)))
                   for p, pids in part]
            what = f"set_payload operations {start + 1}..{start + len(part)} of {len(updates)}"
            self._capture([pid for _, pids in part for pid in pids], what)
            self._call(partial(self.client.batch_update_points, self.collection, ops, wait=True), what)
        return len(updates)

    def delete_where(self, selector_filter, what: str) -> None:
        """Delete every point matching a Qdrant filter (retried like any write; no before-images)."""
        self._call(partial(self.client.delete, self.collection, wait=True,
                           points_selector=models.FilterSelector(filter=selector_filter)), what)

    def _capture(self, ids: list[str], what: str) -> None:
        """Save the before-images of `ids` in the undo log, if any, before the write that changes them."""
        if self.undo is not None:
            self._call(partial(self.undo.capture, self.client, ids), f"before-images for {what}", "undo_reads")

    def delete_points(self, ids: list[str]) -> int:
        """Delete points by id, `batch_size` per request; deleting a missing id is not an error."""
        for start in range(0, len(ids), self.batch_size):
            part = list(ids[start:start + self.batch_size])
            what = f"delete of {len(part)} points (ids {part[0]} .. {part[-1]})"
            self._capture(part, what)
            self._call(partial(self.client.delete, self.collection,
                               points_selector=models.PointIdsList(points=part), wait=True), what)
        return len(ids)
