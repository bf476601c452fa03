"""PointWriter against real local-mode Qdrant; transient failures come from a labelled fault injector."""

from __future__ import annotations

import grpc
import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qdrant_client import QdrantClient
from qdrant_client.http import models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from qbatch.common.errors import QBatchError, SinkUnreachableError
from qbatch.connectors.point_ids import point_id
from qbatch.connectors.qdrant_config import QdrantConfig
from qbatch.connectors.qdrant_writer import PointWriter, WriterStats, is_transient, last_wins

DIM = 4


def http_error(status: int) -> UnexpectedResponse:
    return UnexpectedResponse(status, "", b'{"status":{"error":"injected"}}', httpx.Headers())


class FakeRpcError(grpc.RpcError):
    """FAKE gRPC error: no gRPC server runs here, so the status a real channel would report is injected."""

    def __init__(self, code: grpc.StatusCode):
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


class FaultInjector:
    """FAKE transport faults around a REAL local-mode client: the first calls of `method` raise the
    queued errors (after the real call when `after_apply`, i.e. the answer was lost), then calls go through."""

    def __init__(self, real: QdrantClient, errors: list[BaseException], method: str = "upsert",
                 after_apply: bool = False):
        self.real, self.errors, self.method, self.after_apply = real, list(errors), method, after_apply
        self.sent_ids: list[list[str]] = []

    def __getattr__(self, name: str):
        target = getattr(self.real, name)
        if name != self.method:
            return target

        def call(*args, **kwargs):
            if "points" in kwargs and isinstance(kwargs["points"], models.Batch):
                self.sent_ids.append(list(kwargs["points"].ids))
            if self.errors and not self.after_apply:
                raise self.errors.pop(0)
            result = target(*args, **kwargs)
            if self.errors:
                raise self.errors.pop(0)
            return result
        return call


@pytest.fixture
def client(tmp_path):
    c = QdrantClient(path=str(tmp_path / "q"))
    # DOT keeps stored vectors as sent (cosine would normalise them), so round trips compare exactly.
    c.create_collection("c", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.DOT))
    yield c
    c.close()


def points(n: int, start: int = 0) -> tuple[list[str], np.ndarray, list[dict]]:
    ids = [point_id("doc", i) for i in range(start, start + n)]
    vectors = np.arange(start * DIM, (start + n) * DIM, dtype=np.float32).reshape(n, DIM)
    return ids, vectors, [{"doc_id": "doc", "chunk": i} for i in range(start, start + n)]


def stored(client: QdrantClient) -> dict[str, tuple[list[float], dict]]:
    recs, _ = client.scroll("c", limit=10_000, with_vectors=True, with_payload=True)
    return {str(r.id): (list(r.vector), r.payload) for r in recs}


def recording_sleep() -> tuple[list[float], callable]:
    delays: list[float] = []
    return delays, delays.append


def test_buffers_to_batch_size_and_round_trips(client):
    writer = PointWriter(client, "c", batch_size=4)
    ids, vecs, pays = points(10)
    assert writer.write([], np.array([]), []) == 0
    assert writer.write(ids[:3], vecs[:3], pays[:3]) == 0  # still buffered
    assert writer.write(ids[3:], vecs[3:], pays[3:]) == 8
    assert client.count("c").count == 8
    writer.close()
    got = stored(client)
    assert sorted(got) == sorted(ids)
    for i, pid in enumerate(ids):
        assert got[pid] == (vecs[i].tolist(), pays[i])
    assert writer.counters == WriterStats(points_written=10, requests=3, retries=0, duplicates_collapsed=0)
    assert writer.stats() == {"points_written": 10, "requests": 3, "retries": 0, "duplicates_collapsed": 0,
                              "undo_reads": 0}
    with pytest.raises(RuntimeError, match="closed"):
        writer.write(ids, vecs, pays)


def test_duplicates_in_one_request_collapse_to_the_last(client):
    spy = FaultInjector(client, [])
    ids, vecs, pays = points(3)
    dup_ids = [ids[0], ids[1], ids[0], ids[2], ids[0]]
    dup_vecs = np.stack([vecs[0], vecs[1], vecs[0] + 1, vecs[2], vecs[0] + 2])
    dup_pays = [{"v": 1}, {"v": 2}, {"v": 3}, {"v": 4}, {"v": 5}]
    with PointWriter(spy, "c", batch_size=10) as writer:
        writer.write(dup_ids, dup_vecs, dup_pays)
    assert spy.sent_ids == [[ids[1], ids[2], ids[0]]]
    assert stored(client)[ids[0]] == ((vecs[0] + 2).tolist(), {"v": 5})
    assert (writer.counters.points_written, writer.counters.duplicates_collapsed) == (3, 2)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=st.lists(st.integers(0, 12), max_size=40), batch_size=st.integers(1, 7))
def test_property_last_write_wins_and_no_request_repeats_an_id(client, keys, batch_size):
    client.delete_collection("c")
    client.create_collection("c", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.DOT))
    spy = FaultInjector(client, [])
    writer = PointWriter(spy, "c", batch_size=batch_size)
    ids = [point_id("k", k) for k in keys]
    vecs = np.array([[i, k, 0, 1] for i, k in enumerate(keys)], dtype=np.float32).reshape(-1, DIM)
    writer.write(ids, vecs, [{"i": i} for i in range(len(keys))])
    writer.close()
    expected = {pid: i for i, pid in enumerate(ids)}  # dict keeps the last position of each id
    assert {pid: p["i"] for pid, (_, p) in stored(client).items()} == expected
    assert all(len(req) == len(set(req)) for req in spy.sent_ids)
    assert writer.counters.points_written + writer.counters.duplicates_collapsed == len(keys)


@pytest.mark.parametrize("after_apply", [False, True], ids=["failed-before", "answer-lost"])
def test_transient_errors_are_retried_and_points_land_exactly_once(client, after_apply):
    errors = [ResponseHandlingException(httpx.ConnectError("connection refused")), http_error(503),
              TimeoutError("timed out"), http_error(429), FakeRpcError(grpc.StatusCode.UNAVAILABLE)]
    flaky = FaultInjector(client, errors, after_apply=after_apply)
    delays, sleep = recording_sleep()
    writer = PointWriter(flaky, "c", batch_size=5, max_retries=6, base_delay_s=0.5, max_delay_s=3.0,
                         sleep=sleep, seed=1)
    ids, vecs, pays = points(12)
    writer.write(ids, vecs, pays)
    writer.close()
    assert sorted(stored(client)) == sorted(ids) and client.count("c").count == 12
    assert writer.counters.retries == 5 and writer.counters.requests == 3 + 5
    # Full jitter: the n-th wait of a request is somewhere in [0, min(cap, base * 2^(n-1))].
    caps = [0.5, 1.0, 2.0, 3.0, 3.0]
    assert all(0.0 <= d <= cap for d, cap in zip(delays, caps)) and len(delays) == 5


@pytest.mark.parametrize("error", [http_error(400), http_error(404), ResponseHandlingException(ValueError("bad json"))])
def test_permanent_errors_fail_at_once(client, error):
    delays, sleep = recording_sleep()
    writer = PointWriter(FaultInjector(client, [error]), "c", batch_size=2, sleep=sleep)
    ids, vecs, pays = points(2)
    with pytest.raises(QBatchError, match="rejected upsert batch 1") as info:
        writer.write(ids, vecs, pays)
    assert not isinstance(info.value, SinkUnreachableError)
    assert (writer.counters.requests, writer.counters.retries, delays) == (1, 0, [])
    assert client.count("c").count == 0


def test_wrong_vector_size_from_real_local_qdrant_fails_at_once(client):
    writer = PointWriter(client, "c", batch_size=2, sleep=lambda s: pytest.fail("must not retry"))
    with pytest.raises(QBatchError, match="dim"):
        writer.write([point_id("d", 0), point_id("d", 1)], np.ones((2, DIM + 1)), [{}, {}])
    assert writer.counters.requests == 1


def test_exhaustion_names_the_batch_and_keeps_it_buffered(client):
    flaky = FaultInjector(client, [http_error(502)] * 100)
    writer = PointWriter(flaky, "c", batch_size=3, max_retries=4, sleep=lambda s: None)
    ids, vecs, pays = points(3)
    with pytest.raises(SinkUnreachableError) as info:
        writer.write(ids, vecs, pays)
    msg = str(info.value)
    assert "upsert batch 1 (3 points" in msg and ids[0] in msg and ids[-1] in msg and "after 4 tries" in msg
    assert (writer.counters.requests, writer.counters.retries, writer.counters.points_written) == (4, 3, 0)
    flaky.errors.clear()  # the outage ends: the same batch goes out on the next flush
    assert writer.flush() == 3 and client.count("c").count == 3


def test_non_finite_vectors_are_never_written(client):
    writer = PointWriter(client, "c", batch_size=1)
    ids, vecs, pays = points(2)
    vecs[1, 2] = np.nan
    with pytest.raises(ValueError, match=f"1 vectors are not finite.*{ids[1]}"):
        writer.write(ids, vecs, pays)
    assert client.count("c").count == 0


def test_set_payload_and_delete_retry_like_upserts(client):
    ids, vecs, pays = points(5)
    with PointWriter(client, "c", batch_size=10) as w:
        w.write(ids, vecs, pays)
    flaky = FaultInjector(client, [http_error(503)], method="batch_update_points")
    writer = PointWriter(flaky, "c", batch_size=2, sleep=lambda s: None)
    assert writer.set_payload_many([({"lang": "en"}, ids[:3]), ({"lang": "de"}, ids[3:])]) == 2
    langs = {pid: p.get("lang") for pid, (_, p) in stored(client).items()}
    assert langs == {**{i: "en" for i in ids[:3]}, **{i: "de" for i in ids[3:]}}
    assert stored(client)[ids[0]][1]["chunk"] == 0  # merged, not overwritten
    flaky = FaultInjector(client, [TimeoutError()], method="delete")
    writer = PointWriter(flaky, "c", batch_size=2, sleep=lambda s: None)
    assert writer.delete_points(ids[:3] + [point_id("never", 0)]) == 4
    assert sorted(stored(client)) == sorted(ids[3:]) and writer.counters.retries == 1


@pytest.mark.parametrize("error, transient", [
    (http_error(500), True), (http_error(503), True), (http_error(429), True), (http_error(408), True),
    (http_error(400), False), (http_error(401), False), (http_error(409), False),
    (ResponseHandlingException(httpx.ReadTimeout("slow")), True),
    (ResponseHandlingException(httpx.RemoteProtocolError("reset")), True),
    (httpx.ConnectError("refused"), True), (httpx.UnsupportedProtocol("ftp"), False),
    (ConnectionResetError(), True), (TimeoutError(), True),
    (FakeRpcError(grpc.StatusCode.UNAVAILABLE), True), (FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED), True),
    (FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT), False), (ValueError("wrong dim"), False),
])
def test_is_transient(error, transient):
    assert is_transient(error) is transient


def test_helpers():
    assert last_wins(["a", "b", "a", "c", "b"]) == [2, 3, 4]
    assert WriterStats(1, 2, 3, 4) + WriterStats(10, 20, 30, 40) == WriterStats(11, 22, 33, 44)
    w = PointWriter.from_config(None, QdrantConfig(upsert_batch_size=7, max_retries=2, collection="x"))
    assert (w.collection, w.batch_size, w.max_retries) == ("x", 7, 2)


class SerializedClient:
    """TEST WRAPPER around a REAL local-mode client: local mode is not meant for concurrent callers,
    so calls are serialised here; the writer's own thread pool, bookkeeping and errors are real."""

    def __init__(self, inner):
        import threading

        self.inner, self.lock, self.max_waiting = inner, threading.Lock(), 0
        self._waiting = 0

    def __getattr__(self, name: str):
        target = getattr(self.inner, name)

        def call(*args, **kwargs):
            self._waiting += 1
            self.max_waiting = max(self.max_waiting, self._waiting)
            with self.lock:
                self._waiting -= 1
                return target(*args, **kwargs)
        return call


def test_parallel_writers_land_every_point_once_and_flush_waits_for_all(client):
    injector = FaultInjector(client, [http_error(503), httpx.ConnectError("reset")])
    wrapped = SerializedClient(injector)
    writer = PointWriter(wrapped, "c", batch_size=5, parallel=3, sleep=lambda s: None, seed=1)
    ids, vecs, pays = points(60)
    for start in range(0, 60, 7):
        writer.write(ids[start:start + 7], vecs[start:start + 7], pays[start:start + 7])
    writer.flush()  # returns only when every request in flight was acknowledged
    assert client.count("c").count == 60 and sorted(stored(client)) == sorted(ids)
    assert writer.counters.points_written == 60 and writer.counters.retries == 2
    writer.close()


def test_a_parallel_batch_that_gives_up_raises_at_flush(client):
    injector = FaultInjector(client, [http_error(503)] * 10)
    writer = PointWriter(SerializedClient(injector), "c", batch_size=4, max_retries=2, parallel=2,
                         sleep=lambda s: None)
    ids, vecs, pays = points(4)
    writer.write(ids, vecs, pays)
    with pytest.raises(SinkUnreachableError, match="upsert batch 1"):
        writer.flush()


def test_acknowledged_points_are_counted_per_tag_from_completed_answers(client):
    injector = FaultInjector(client, [http_error(503)])  # the first request fails: its points are not acked yet
    writer = PointWriter(injector, "c", batch_size=4, sleep=lambda s: None, seed=0)
    ids, vecs, pays = points(10)
    writer.write(ids[:6], vecs[:6], pays[:6], tags=["a.jsonl"] * 6)
    writer.write(ids[6:], vecs[6:], pays[6:], tags=["b.jsonl"] * 4)
    writer.flush()
    assert writer.take_acknowledged("a.jsonl") == 6 and writer.take_acknowledged("b.jsonl") == 4
    assert writer.take_acknowledged("a.jsonl") == 0  # handed out once
    assert writer.stats()["points_written"] == 10 and writer.stats()["retries"] == 1
    assert client.count("c", exact=True).count == 10


def test_an_upsert_answer_that_is_not_completed_is_no_acknowledgement(client):
    class AcknowledgesNothing:
        """FAKE answer around a REAL client: the write is applied, but the answer says 'acknowledged'
        (what Qdrant returns for wait=False), which is not proof that the points are durable."""

        def __init__(self, real):
            self.real = real

        def __getattr__(self, name):
            return getattr(self.real, name)

        def upsert(self, *args, **kwargs):
            self.real.upsert(*args, **kwargs)
            return models.UpdateResult(operation_id=0, status=models.UpdateStatus.ACKNOWLEDGED)

    writer = PointWriter(AcknowledgesNothing(client), "c", batch_size=4)
    ids, vecs, pays = points(4)
    with pytest.raises(SinkUnreachableError, match="not 'completed'"):
        writer.write(ids, vecs, pays, tags=["a"] * 4)
    assert writer.take_acknowledged("a") == 0
