"""STAND-IN for a Qdrant server -- this is NOT Qdrant.

A small pure-Python server that answers the subset of Qdrant's REST and gRPC APIs that qbatch's write
path uses, with the JSON / protobuf shapes real Qdrant answers, so that an unmodified
`qdrant_client.QdrantClient(url=...)` (REST, or `prefer_grpc=True`) can talk to it. It exists only
because no real Qdrant server can be installed on the machines these benchmarks run on. Use it to
measure the CLIENT side of the write path (serialisation, HTTP/gRPC framing, retries); never read its
own speed, memory or semantics as Qdrant's: there is no index, no WAL, no persistence, no
optimiser, no search, and every write is applied synchronously under one lock.

What it does do, so that the client sees realistic work and answers:
- REST: request bodies are JSON-decoded in full (every vector and payload), vectors are kept as
  float32 arrays and payloads as dicts in a dict `point id -> (vector, payload)` per collection.
- gRPC: requests are decoded by protobuf and every point is converted the same way.
- Optional FAULT INJECTION (off by default): `fail_ratio` makes that share of upsert requests answer
  HTTP 503 / gRPC UNAVAILABLE without applying them, drawn from a seeded RNG so runs repeat.

Implemented (anything else answers 404 / UNIMPLEMENTED):
  REST  GET /, /healthz, /livez, /readyz          version probe and health
        GET /collections, GET|PUT|DELETE /collections/{c}, GET /collections/{c}/exists
        GET /aliases, GET /collections/{c}/aliases  (always empty: aliases are not modelled)
        PUT /collections/{c}/points                 upsert (PointsBatch or PointsList)
        POST /collections/{c}/points                retrieve by ids
        GET /collections/{c}/points/{id}            retrieve one
        POST /collections/{c}/points/count | /scroll | /delete | /batch
        POST|PUT /collections/{c}/points/payload    set / overwrite payload
        POST /collections/{c}/points/payload/delete | /payload/clear
  gRPC  qdrant.Points: Upsert, Get, Count, Delete, SetPayload, OverwritePayload, Scroll, UpdateBatch
        qdrant.Collections: Get, List, Create, Delete, CollectionExists, ListAliases,
                            ListCollectionAliases
        qdrant.Qdrant: HealthCheck
  Filters (count / scroll / delete / set_payload by filter): must / should / must_not, nested filters,
  has_id, is_empty, is_null, and field conditions with match value / any / except and range.

Usage:
    # in its own process (what bench_write_path.py does, so its CPU is not counted as the client's)
    python benchmarks/standin_qdrant_server.py --rest-port 6333 --grpc-port 6334 [--fail-ratio 0.2 --seed 0]

    # in-process, in threads
    from benchmarks.standin_qdrant_server import StandinQdrant
    with StandinQdrant() as server:
        client = QdrantClient(url=server.url, grpc_port=server.grpc_port, prefer_grpc=True)

    # as a child process from Python
    from benchmarks.standin_qdrant_server import StandinProcess
    with StandinProcess() as server:
        ...; server.cpu_seconds()

    # self-check against the real qdrant_client (REST and gRPC)
    python benchmarks/standin_qdrant_server.py --self-check [--n 2000 --dim 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the checkout's packages must be importable
    sys.path.insert(0, str(ROOT))

from benchmarks.standin_qdrant.grpc_api import grpc_servicers  # noqa: E402
from benchmarks.standin_qdrant.points import MAX_GRPC_MESSAGE, READY_PREFIX  # noqa: E402
from benchmarks.standin_qdrant.rest_api import RestApi, RestHandler, RestServer  # noqa: E402
from benchmarks.standin_qdrant.store import Store  # noqa: E402


class StandinQdrant:
    """The stand-in (NOT Qdrant) in this process: REST and gRPC servers in background threads.

    Port 0 picks a free port; read the chosen ones from `.rest_port` / `.grpc_port` after `start()`."""

    def __init__(self, fail_ratio: float = 0.0, seed: int = 0, host: str = "127.0.0.1", rest_port: int = 0,
                 grpc_port: int = 0, grpc_workers: int = 8):
        self.store = Store(fail_ratio, seed)
        self.host, self._rest_port, self._grpc_port, self.grpc_workers = host, rest_port, grpc_port, grpc_workers
        self.rest_port: int | None = None
        self.grpc_port: int | None = None
        self._http: RestServer | None = None
        self._grpc: grpc.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.rest_port}"

    @property
    def points(self) -> int:
        """Points stored, all collections together."""
        return self.store.total_points

    def start(self) -> "StandinQdrant":
        if self._http is not None:
            return self
        self._http = RestServer((self.host, self._rest_port), RestHandler)
        self._http.api = RestApi(self.store)  # type: ignore[attr-defined]
        self.rest_port = self._http.server_address[1]
        self._thread = threading.Thread(target=self._http.serve_forever, name="standin-rest", daemon=True)
        self._thread.start()
        self._grpc = grpc.server(ThreadPoolExecutor(self.grpc_workers, thread_name_prefix="standin-grpc"),
                                 options=[("grpc.max_receive_message_length", MAX_GRPC_MESSAGE),
                                          ("grpc.max_send_message_length", MAX_GRPC_MESSAGE)])
        for servicer, add in grpc_servicers(self.store):
            add(servicer, self._grpc)
        self.grpc_port = self._grpc.add_insecure_port(f"{self.host}:{self._grpc_port}")
        if not self.grpc_port:
            self.stop()
            raise OSError(f"could not bind the gRPC port {self.host}:{self._grpc_port}")
        self._grpc.start()
        return self

    def stop(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(grace=None)
            self._grpc = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def __enter__(self) -> "StandinQdrant":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class StandinProcess:
    """The stand-in (NOT Qdrant) in a child Python process, so its CPU is not charged to the caller."""

    def __init__(self, fail_ratio: float = 0.0, seed: int = 0, rest_port: int = 0, grpc_port: int = 0,
                 python: str = sys.executable, start_timeout_s: float = 60.0, quiet: bool = False):
        self.args = [python, str(Path(__file__).resolve()), "--rest-port", str(rest_port), "--grpc-port",
                     str(grpc_port), "--fail-ratio", str(fail_ratio), "--seed", str(seed)] + (["--quiet"] if quiet else [])
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen | None = None
        self.rest_port: int | None = None
        self.grpc_port: int | None = None
        self.host = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.rest_port}"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def start(self) -> "StandinProcess":
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + self.start_timeout_s
        line = ""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready:
                line = self.proc.stdout.readline()
                if line.startswith(READY_PREFIX) or not line:
                    break
            if self.proc.poll() is not None:
                break
        if not line.startswith(READY_PREFIX):
            self.stop()
            raise RuntimeError(f"stand-in Qdrant did not start (last line {line!r})")
        fields = dict(kv.split("=", 1) for kv in line.split()[2:])
        self.rest_port, self.grpc_port = int(fields["rest"]), int(fields["grpc"])
        return self

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server process has used so far (Linux /proc)."""
        if self.proc is None:
            return 0.0
        try:
            stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        except OSError:
            return 0.0
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> "StandinProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def self_check(n: int = 2000, dim: int = 1024, fail_ratio: float = 0.0) -> None:
    """Drive the stand-in with the real qdrant_client over REST and gRPC and check what comes back."""
    from qdrant_client import QdrantClient
    from qdrant_client.http import models

    rng = np.random.default_rng(0)
    ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"doc-{i}")) for i in range(n)]
    vecs = rng.standard_normal((n, dim), dtype=np.float32)
    payloads = [{"doc_id": f"doc-{i}", "chunk": 0, "lang": "en"} for i in range(n)]
    with StandinProcess(fail_ratio=fail_ratio) as server:
        print(f"stand-in (NOT Qdrant) pid {server.pid}: REST {server.rest_port}, gRPC {server.grpc_port}")
        for prefer_grpc in (False, True):
            proto = "gRPC" if prefer_grpc else "REST"
            client = QdrantClient(url=server.url, grpc_port=server.grpc_port, prefer_grpc=prefer_grpc, timeout=60)
            coll = f"check_{proto.lower()}"
            assert not client.collection_exists(coll)
            client.create_collection(coll, vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE))
            assert client.collection_exists(coll)
            info = client.get_collection(coll)
            assert info.config.params.vectors.size == dim, info.config.params.vectors
            start = time.perf_counter()
            for lo in range(0, n, 256):
                res = client.upsert(coll, points=models.Batch(ids=ids[lo:lo + 256], vectors=vecs[lo:lo + 256].tolist(),
                                                              payloads=payloads[lo:lo + 256]), wait=True)
                assert res.status == models.UpdateStatus.COMPLETED, res
            wall = time.perf_counter() - start
            assert client.count(coll).count == n
            client.upsert(coll, points=[models.PointStruct(id=ids[0], vector=vecs[0].tolist(), payload={"x": 1})])
            got = client.retrieve(coll, ids[:3], with_payload=True, with_vectors=True)
            assert [str(r.id) for r in got] == ids[:3], got
            assert got[0].payload == {"x": 1} and got[1].payload == payloads[1]
            assert np.allclose(got[1].vector, vecs[1]), "vector round trip"
            client.set_payload(coll, {"tag": "t"}, points=ids[1:3])
            assert client.retrieve(coll, [ids[2]])[0].payload["tag"] == "t"
            flt = models.Filter(must=[models.FieldCondition(key="tag", match=models.MatchValue(value="t"))])
            assert client.count(coll, count_filter=flt).count == 2
            client.delete(coll, points_selector=models.PointIdsList(points=ids[:10]))
            assert client.count(coll).count == n - 10
            client.delete(coll, points_selector=models.FilterSelector(filter=models.Filter(
                must=[models.FieldCondition(key="doc_id", match=models.MatchAny(any=["doc-10", "doc-11"]))])))
            assert client.count(coll).count == n - 12
            assert client.get_collection(coll).points_count == n - 12
            print(f"{proto}: upserted {n} x {dim}-d points in {wall:.2f}s ({n / wall:,.0f} points/s); count, "
                  "retrieve, set_payload, filtered count and delete all answered as expected")
            client.close()
        print(f"server CPU seconds: {server.cpu_seconds():.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--rest-port", type=int, default=6333, help="0 picks a free port")
    parser.add_argument("--grpc-port", type=int, default=6334, help="0 picks a free port")
    parser.add_argument("--fail-ratio", type=float, default=0.0,
                        help="FAULT INJECTION: share of upsert requests answered 503 / UNAVAILABLE (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault-injection RNG")
    parser.add_argument("--grpc-workers", type=int, default=8)
    parser.add_argument("--quiet", action="store_true", help="no start/stop lines on stderr (the READY line stays)")
    parser.add_argument("--self-check", action="store_true", help="run the client round-trip check and exit")
    parser.add_argument("--n", type=int, default=2000, help="points per protocol in --self-check")
    parser.add_argument("--dim", type=int, default=1024, help="vector size in --self-check")
    args = parser.parse_args()
    if args.self_check:
        self_check(args.n, args.dim, args.fail_ratio)
        return
    server = StandinQdrant(args.fail_ratio, args.seed, args.host, args.rest_port, args.grpc_port, args.grpc_workers)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    print(f"{READY_PREFIX} rest={server.rest_port} grpc={server.grpc_port} pid={os.getpid()} "
          f"fail_ratio={args.fail_ratio}", flush=True)
    if not args.quiet:
        print(f"stand-in Qdrant (NOT a real Qdrant server) on {args.host}: REST {server.rest_port}, "
              f"gRPC {server.grpc_port}" + (f"; FAULT INJECTION: {args.fail_ratio:.0%} of upserts fail"
                                            if args.fail_ratio else ""), file=sys.stderr, flush=True)
    stop.wait()
    server.stop()
    if not args.quiet:
        print(f"stand-in stopped; stats {json.dumps(server.store.stats)}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
