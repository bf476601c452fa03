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
import random
import re
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import grpc
import numpy as np

TITLE = "qdrant - vector search engine (STAND-IN for benchmarks, not Qdrant)"
READY_PREFIX = "STANDIN-QDRANT READY"
MAX_GRPC_MESSAGE = 256 * 1024 * 1024


def _client_version() -> str:
    """The installed qdrant-client's version, reported as ours so its compatibility check passes."""
    try:
        from importlib.metadata import version
        return version("qdrant-client")
    except Exception:  # noqa: BLE001
        return "1.15.0"


class Raw(dict):
    """A REST answer sent as is, not wrapped in {"result": ...} (Qdrant's GET / answers like this)."""


class ApiError(Exception):
    """An error answer: HTTP status for REST, gRPC status code for gRPC."""

    def __init__(self, http_status: int, message: str, grpc_code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT):
        super().__init__(message)
        self.http_status, self.message, self.grpc_code = http_status, message, grpc_code


def _not_found(name: str) -> ApiError:
    return ApiError(404, f"Not found: Collection `{name}` doesn't exist!", grpc.StatusCode.NOT_FOUND)


def _fault() -> ApiError:
    return ApiError(503, "Service Unavailable: injected fault (stand-in fault injection, fail_ratio > 0)",
                    grpc.StatusCode.UNAVAILABLE)


def norm_id(pid: Any) -> int | str:
    """Qdrant point ids are unsigned ints or UUIDs; UUIDs are kept in canonical hyphenated lower case."""
    if isinstance(pid, bool):
        raise ApiError(400, f"Wrong input: invalid point id {pid!r}")
    if isinstance(pid, int):
        if pid < 0:
            raise ApiError(400, f"Wrong input: invalid point id {pid!r}")
        return pid
    if isinstance(pid, str):
        try:
            return str(uuid.UUID(pid))
        except ValueError:
            raise ApiError(400, f"Wrong input: unable to parse UUID: {pid}") from None
    raise ApiError(400, f"Wrong input: invalid point id {pid!r}")


# ---------------------------------------------------------------------------------------------- store


def _lookup(payload: dict, key: str) -> list:
    """Values at dotted `key` in payload, arrays flattened (Qdrant matches if any element matches)."""
    values = [payload]
    for part in key.split("."):
        arr = part.endswith("[]")
        part = part[:-2] if arr else part
        nxt = []
        for v in values:
            if isinstance(v, dict) and part in v:
                nxt.append(v[part])
        values = nxt
    out = []
    for v in values:
        out.extend(v if isinstance(v, list) else [v])
    return out


def _condition(cond: dict, pid: Any, payload: dict) -> bool:
    if any(k in cond for k in ("must", "should", "must_not")):
        return matches(cond, pid, payload)
    if "has_id" in cond:
        return pid in {norm_id(i) for i in cond["has_id"]}
    if "is_empty" in cond:
        return not [v for v in _lookup(payload, cond["is_empty"]["key"]) if v is not None]
    if "is_null" in cond:
        return any(v is None for v in _lookup(payload, cond["is_null"]["key"]))
    if "key" in cond:
        values = [v for v in _lookup(payload, cond["key"]) if v is not None]
        match, rng = cond.get("match"), cond.get("range")
        if match is not None:
            if "value" in match:
                return match["value"] in values
            if "any" in match:
                return any(v in match["any"] for v in values)
            if "except" in match:
                return bool(values) and all(v not in match["except"] for v in values)
            if "text" in match:
                return any(isinstance(v, str) and match["text"] in v for v in values)
        if rng is not None:
            def ok(v):
                return (isinstance(v, (int, float)) and not isinstance(v, bool)
                        and (rng.get("gt") is None or v > rng["gt"]) and (rng.get("gte") is None or v >= rng["gte"])
                        and (rng.get("lt") is None or v < rng["lt"]) and (rng.get("lte") is None or v <= rng["lte"]))
            return any(ok(v) for v in values)
    raise ApiError(400, f"Wrong input: condition not supported by the stand-in: {json.dumps(cond)[:200]}")


def matches(flt: dict | None, pid: Any, payload: dict) -> bool:
    """Qdrant filter semantics (the subset listed in the module docstring) on REST-form JSON."""
    if not flt:
        return True

    def as_list(x):
        return x if isinstance(x, list) else ([] if x is None else [x])
    if not all(_condition(c, pid, payload) for c in as_list(flt.get("must"))):
        return False
    should = as_list(flt.get("should"))
    if should and not any(_condition(c, pid, payload) for c in should):
        return False
    return not any(_condition(c, pid, payload) for c in as_list(flt.get("must_not")))


def _select_payload(payload: dict | None, with_payload: Any) -> dict | None:
    if not with_payload or payload is None:
        return None
    if with_payload is True:
        return payload
    if isinstance(with_payload, list):
        return {k: payload[k] for k in with_payload if k in payload}
    if isinstance(with_payload, dict):
        if with_payload.get("include") is not None:
            return {k: payload[k] for k in with_payload["include"] if k in payload}
        if with_payload.get("exclude") is not None:
            return {k: v for k, v in payload.items() if k not in with_payload["exclude"]}
    return payload


def _select_vector(vector: Any, with_vector: Any) -> Any:
    if not with_vector or vector is None:
        return None
    if isinstance(vector, dict):
        names = vector if with_vector is True else [n for n in with_vector if n in vector]
        return {n: vector[n].tolist() for n in names}
    if with_vector is True or "" in with_vector:
        return vector.tolist()
    return None


class Collection:
    def __init__(self, name: str, config: dict):
        self.name, self.config = name, config
        self.points: dict[int | str, tuple[Any, dict]] = {}
        self.created_at = datetime.now(timezone.utc).isoformat()
        vectors = config.get("vectors")
        self.dense_size = vectors.get("size") if isinstance(vectors, dict) and "size" in vectors else None
        self.named_sizes = ({k: v.get("size") for k, v in vectors.items() if isinstance(v, dict)}
                            if isinstance(vectors, dict) and "size" not in vectors else {})

    def vector(self, raw: Any) -> Any:
        """A float32 array (or {name: array}) from a JSON list (or dict), checked against the config."""
        if isinstance(raw, dict):
            out = {}
            for name, v in raw.items():
                if name not in self.named_sizes:
                    raise ApiError(400, f"Wrong input: Not existing vector name error: {name}")
                out[name] = self._dense(v, self.named_sizes[name])
            return out
        if self.dense_size is None:
            raise ApiError(400, "Wrong input: Not existing vector name error: ")
        return self._dense(raw, self.dense_size)

    @staticmethod
    def _dense(v: Any, size: int | None) -> np.ndarray:
        if isinstance(v, dict) or (v and isinstance(v[0], list)):
            raise ApiError(400, "Wrong input: sparse and multi-vectors are not supported by the stand-in")
        arr = np.asarray(v, dtype=np.float32)
        if size is not None and arr.shape != (size,):
            raise ApiError(400, f"Wrong input: Vector dimension error: expected dim: {size}, got {arr.size}")
        return arr

    def info(self) -> dict:
        n = len(self.points)
        return {
            "status": "green", "optimizer_status": "ok", "indexed_vectors_count": 0, "points_count": n,
            "segments_count": 1, "payload_schema": {}, "created_at": self.created_at,
            "config": {
                "params": {"vectors": self.config.get("vectors", {}), "shard_number": 1, "replication_factor": 1,
                           "write_consistency_factor": 1, "on_disk_payload": True},
                "hnsw_config": {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000,
                                "max_indexing_threads": 0, "on_disk": False},
                "optimizer_config": {"deleted_threshold": 0.2, "vacuum_min_vector_number": 1000,
                                     "default_segment_number": 0, "max_segment_size": None,
                                     "memmap_threshold": None, "indexing_threshold": 10000,
                                     "flush_interval_sec": 5, "max_optimization_threads": None},
                "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0},
                "quantization_config": None,
            },
        }

    def select(self, points: list | None = None, flt: dict | None = None) -> list:
        """Ids named by a points list or matched by a filter (existing points only)."""
        if points is not None:
            return [k for k in (norm_id(p) for p in points) if k in self.points]
        return [k for k, (_, payload) in self.points.items() if matches(flt, k, payload)]

    def record(self, key: Any, with_payload: Any, with_vector: Any) -> dict:
        vector, payload = self.points[key]
        return {"id": key, "payload": _select_payload(payload, with_payload),
                "vector": _select_vector(vector, with_vector), "shard_key": None, "order_value": None}


def _sort_key(k: Any) -> tuple:
    return (0, k, "") if isinstance(k, int) else (1, 0, k)


class Store:
    """All collections, one lock, a sequential operation id, and the seeded fault-injection RNG."""

    def __init__(self, fail_ratio: float = 0.0, seed: int = 0):
        if not 0.0 <= fail_ratio <= 1.0:
            raise ValueError(f"fail_ratio must be within [0, 1], got {fail_ratio}")
        self.lock = threading.RLock()
        self.collections: dict[str, Collection] = {}
        self.fail_ratio = fail_ratio
        self._rng = random.Random(seed)
        self._op = 0
        self.stats = {"upsert_requests": 0, "upsert_faults_injected": 0, "points_upserted": 0}

    # -- helpers
    def get(self, name: str) -> Collection:
        coll = self.collections.get(name)
        if coll is None:
            raise _not_found(name)
        return coll

    def _result(self, wait: bool = True) -> dict:
        self._op += 1
        return {"operation_id": self._op, "status": "completed" if wait else "acknowledged"}

    def maybe_fault(self) -> None:
        """FAULT INJECTION: raise a 503/UNAVAILABLE for `fail_ratio` of upsert requests (seeded)."""
        with self.lock:
            self.stats["upsert_requests"] += 1
            if self.fail_ratio > 0 and self._rng.random() < self.fail_ratio:
                self.stats["upsert_faults_injected"] += 1
                raise _fault()

    @property
    def total_points(self) -> int:
        with self.lock:
            return sum(len(c.points) for c in self.collections.values())

    # -- collections
    def create_collection(self, name: str, body: dict) -> bool:
        with self.lock:
            if name in self.collections:
                raise ApiError(409, f"Wrong input: Collection `{name}` already exists!", grpc.StatusCode.ALREADY_EXISTS)
            if not body.get("vectors") and not body.get("sparse_vectors"):
                body = {**body, "vectors": {}}
            self.collections[name] = Collection(name, body)
            return True

    def delete_collection(self, name: str) -> bool:
        with self.lock:
            return self.collections.pop(name, None) is not None

    # -- points (REST-form arguments; the gRPC side converts to these)
    def upsert_prepared(self, name: str, items: list[tuple[Any, Any, dict]], wait: bool = True) -> dict:
        """items: (normalised id, float32 vector or {name: vector}, payload)."""
        with self.lock:
            coll = self.get(name)
            for key, vector, payload in items:
                coll.points[key] = (vector, payload or {})
            self.stats["points_upserted"] += len(items)
            return self._result(wait)

    def upsert_json(self, name: str, body: dict, wait: bool = True) -> dict:
        coll = self.get(name)
        if "batch" in body:
            batch = body["batch"]
            ids, vectors, payloads = batch["ids"], batch["vectors"], batch.get("payloads")
            if isinstance(vectors, dict):  # named: {name: [vectors]}
                per_point = [{n: vs[i] for n, vs in vectors.items()} for i in range(len(ids))]
            else:
                per_point = vectors
            if len(per_point) != len(ids) or (payloads is not None and len(payloads) != len(ids)):
                raise ApiError(400, "Wrong input: ids, vectors and payloads must have the same length")
            items = [(norm_id(ids[i]), coll.vector(per_point[i]), payloads[i] if payloads else {})
                     for i in range(len(ids))]
        elif "points" in body:
            items = [(norm_id(p["id"]), coll.vector(p["vector"]), p.get("payload") or {}) for p in body["points"]]
        else:
            raise ApiError(400, "Wrong input: upsert needs `batch` or `points`")
        return self.upsert_prepared(name, items, wait)

    def retrieve(self, name: str, ids: list, with_payload: Any = True, with_vector: Any = False) -> list[dict]:
        with self.lock:
            coll = self.get(name)
            keys = [k for k in (norm_id(i) for i in ids) if k in coll.points]
            return [coll.record(k, with_payload, with_vector) for k in keys]

    def count(self, name: str, flt: dict | None = None) -> dict:
        with self.lock:
            coll = self.get(name)
            return {"count": len(coll.points) if not flt else len(coll.select(None, flt))}

    def scroll(self, name: str, body: dict) -> dict:
        with self.lock:
            coll = self.get(name)
            keys = sorted(coll.select(None, body.get("filter")), key=_sort_key)
            offset = body.get("offset")
            if offset is not None:
                start = _sort_key(norm_id(offset))
                keys = [k for k in keys if _sort_key(k) >= start]
            limit = int(body.get("limit") or 10)
            page = keys[:limit]
            return {"points": [coll.record(k, body.get("with_payload", True), body.get("with_vector", False))
                               for k in page],
                    "next_page_offset": keys[limit] if len(keys) > limit else None}

    def delete_points(self, name: str, body: dict, wait: bool = True) -> dict:
        with self.lock:
            coll = self.get(name)
            for k in coll.select(body.get("points"), body.get("filter")):
                del coll.points[k]
            return self._result(wait)

    def set_payload(self, name: str, body: dict, overwrite: bool = False, wait: bool = True) -> dict:
        with self.lock:
            coll = self.get(name)
            new = body.get("payload") or {}
            key = body.get("key")
            for k in coll.select(body.get("points"), body.get("filter")):
                vector, payload = coll.points[k]
                if overwrite:
                    payload = dict(new)
                elif key:
                    payload = dict(payload)
                    target = payload.setdefault(key, {})
                    if not isinstance(target, dict):
                        target = payload[key] = {}
                    target.update(new)
                else:
                    payload = {**payload, **new}
                coll.points[k] = (vector, payload)
            return self._result(wait)

    def delete_payload(self, name: str, body: dict, wait: bool = True) -> dict:
        with self.lock:
            coll = self.get(name)
            drop = set(body.get("keys") or [])
            for k in coll.select(body.get("points"), body.get("filter")):
                vector, payload = coll.points[k]
                coll.points[k] = (vector, {kk: v for kk, v in payload.items() if kk not in drop})
            return self._result(wait)

    def clear_payload(self, name: str, body: dict, wait: bool = True) -> dict:
        with self.lock:
            coll = self.get(name)
            selector = body if isinstance(body, dict) else {"points": body}
            for k in coll.select(selector.get("points"), selector.get("filter")):
                coll.points[k] = (coll.points[k][0], {})
            return self._result(wait)

    def batch(self, name: str, operations: list[dict], wait: bool = True) -> list[dict]:
        with self.lock:
            results = []
            for op in operations:
                (kind, arg), = op.items()
                if kind == "upsert":
                    results.append(self.upsert_json(name, arg, wait))
                elif kind == "delete":
                    results.append(self.delete_points(name, arg, wait))
                elif kind == "set_payload":
                    results.append(self.set_payload(name, arg, False, wait))
                elif kind == "overwrite_payload":
                    results.append(self.set_payload(name, arg, True, wait))
                elif kind == "delete_payload":
                    results.append(self.delete_payload(name, arg, wait))
                elif kind == "clear_payload":
                    results.append(self.clear_payload(name, arg, wait))
                else:
                    raise ApiError(400, f"Wrong input: batch operation {kind!r} is not supported by the stand-in")
            return results


# ----------------------------------------------------------------------------------------------- REST

_C = r"/collections/(?P<c>[^/]+)"
_ROUTES: list[tuple[str, re.Pattern, str]] = [(m, re.compile(p + r"/?$"), h) for m, p, h in [
    ("GET", r"/", "root"), ("GET", r"/healthz", "health"), ("GET", r"/livez", "health"), ("GET", r"/readyz", "health"),
    ("GET", r"/collections", "list_collections"), ("GET", r"/aliases", "aliases"),
    ("GET", _C, "get_collection"), ("PUT", _C, "create_collection"), ("DELETE", _C, "delete_collection"),
    ("GET", _C + r"/exists", "collection_exists"), ("GET", _C + r"/aliases", "aliases"),
    ("PUT", _C + r"/points", "upsert"), ("POST", _C + r"/points", "retrieve"),
    ("POST", _C + r"/points/count", "count"), ("POST", _C + r"/points/scroll", "scroll"),
    ("POST", _C + r"/points/delete", "delete"), ("POST", _C + r"/points/batch", "batch"),
    ("POST", _C + r"/points/payload", "set_payload"), ("PUT", _C + r"/points/payload", "overwrite_payload"),
    ("POST", _C + r"/points/payload/delete", "delete_payload"), ("POST", _C + r"/points/payload/clear", "clear_payload"),
    ("GET", _C + r"/points/(?P<id>[^/]+)", "get_point"),
]]


class RestApi:
    """Routes a REST request to the store; returns (HTTP status, JSON `result` or raw text)."""

    def __init__(self, store: Store):
        self.store = store

    def handle(self, method: str, path: str, query: dict[str, str], body: bytes) -> tuple[int, Any]:
        for m, pattern, handler in _ROUTES:
            match = pattern.match(path)
            if match and m == method:
                args = {k: unquote(v) for k, v in match.groupdict().items()}
                return 200, getattr(self, "_" + handler)(query=query, body=body, **args)
        if any(p.match(path) for _, p, _ in _ROUTES):
            raise ApiError(405, f"Method {method} not allowed on {path}", grpc.StatusCode.UNIMPLEMENTED)
        raise ApiError(404, f"Not found: {method} {path} is not implemented by the stand-in",
                       grpc.StatusCode.UNIMPLEMENTED)

    @staticmethod
    def _json(body: bytes) -> Any:
        if not body:
            return {}
        try:
            return json.loads(body)
        except ValueError as e:
            raise ApiError(400, f"Json deserialize error: {e}") from None

    @staticmethod
    def _wait(query: dict) -> bool:
        return query.get("wait", "false").lower() == "true"

    def _root(self, **_):
        return Raw(title=TITLE, version=_client_version(), commit="standin")

    def _health(self, **_):
        return "healthz check passed"

    def _list_collections(self, **_):
        with self.store.lock:
            return {"collections": [{"name": n} for n in self.store.collections]}

    def _aliases(self, c: str | None = None, **_):
        if c is not None:
            self.store.get(c)
        return {"aliases": []}

    def _get_collection(self, c, **_):
        with self.store.lock:
            return self.store.get(c).info()

    def _create_collection(self, c, body, **_):
        return self.store.create_collection(c, self._json(body))

    def _delete_collection(self, c, **_):
        return self.store.delete_collection(c)

    def _collection_exists(self, c, **_):
        with self.store.lock:
            return {"exists": c in self.store.collections}

    def _upsert(self, c, body, query, **_):
        self.store.maybe_fault()  # FAULT INJECTION (no-op unless fail_ratio > 0)
        return self.store.upsert_json(c, self._json(body), self._wait(query))

    def _retrieve(self, c, body, **_):
        b = self._json(body)
        return self.store.retrieve(c, b.get("ids", []), b.get("with_payload", True), b.get("with_vector", False))

    def _get_point(self, c, id, **_):  # noqa: A002
        pid: Any = int(id) if id.isdigit() else id
        records = self.store.retrieve(c, [pid], True, True)
        if not records:
            raise ApiError(404, f"Not found: No point with id {id} found", grpc.StatusCode.NOT_FOUND)
        return records[0]

    def _count(self, c, body, **_):
        return self.store.count(c, self._json(body).get("filter"))

    def _scroll(self, c, body, **_):
        return self.store.scroll(c, self._json(body))

    def _delete(self, c, body, query, **_):
        return self.store.delete_points(c, self._json(body), self._wait(query))

    def _batch(self, c, body, query, **_):
        return self.store.batch(c, self._json(body).get("operations", []), self._wait(query))

    def _set_payload(self, c, body, query, **_):
        return self.store.set_payload(c, self._json(body), False, self._wait(query))

    def _overwrite_payload(self, c, body, query, **_):
        return self.store.set_payload(c, self._json(body), True, self._wait(query))

    def _delete_payload(self, c, body, query, **_):
        return self.store.delete_payload(c, self._json(body), self._wait(query))

    def _clear_payload(self, c, body, query, **_):
        return self.store.clear_payload(c, self._json(body), self._wait(query))


class _RestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects from Qdrant
    server_version = "standin-qdrant"
    # Headers and body leave in one buffered write with TCP_NODELAY: two small writes would meet the
    # client's delayed ACK and add ~40 ms per request, a stall real Qdrant does not have.
    disable_nagle_algorithm = True
    wbufsize = 1 << 16

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _dispatch(self, method: str) -> None:
        start = time.perf_counter()
        body = self._read_body()
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            status, result = self.server.api.handle(method, parts.path, query, body)  # type: ignore[attr-defined]
            if isinstance(result, str):
                payload, ctype = result.encode(), "text/plain"
            elif isinstance(result, Raw):
                payload, ctype = json.dumps(result).encode(), "application/json"
            else:
                payload = json.dumps({"result": result, "status": "ok",
                                      "time": time.perf_counter() - start}).encode()
                ctype = "application/json"
        except ApiError as e:
            status, ctype = e.http_status, "application/json"
            payload = json.dumps({"status": {"error": e.message}, "time": time.perf_counter() - start}).encode()
        except Exception as e:  # noqa: BLE001 - a bug in the stand-in must still answer, not hang the client
            status, ctype = 500, "application/json"
            payload = json.dumps({"status": {"error": f"Service internal error (stand-in): {type(e).__name__}: {e}"},
                                  "time": time.perf_counter() - start}).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")


class _RestServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


# ----------------------------------------------------------------------------------------------- gRPC

def _grpc_servicers(store: Store) -> tuple[Any, Any, Any]:
    from qdrant_client import grpc as qg
    from qdrant_client.conversions.conversion import GrpcToRest, RestToGrpc
    from qdrant_client.grpc import collections_service_pb2_grpc as cs
    from qdrant_client.grpc import points_service_pb2_grpc as ps
    from qdrant_client.grpc import qdrant_pb2_grpc as qs
    from qdrant_client.http import models

    def dump(x: Any) -> Any:
        if hasattr(x, "model_dump"):
            return x.model_dump(mode="json", exclude_none=True)
        if isinstance(x, dict):
            return {k: dump(v) for k, v in x.items()}
        if isinstance(x, list):
            return [dump(v) for v in x]
        return x

    def grpc_id(p: Any) -> int | str:
        return p.num if p.WhichOneof("point_id_options") == "num" else norm_id(p.uuid)

    def dense(v: Any) -> list:
        if v.HasField("dense"):
            return v.dense.data
        if v.HasField("sparse") or v.HasField("multi_dense") or len(v.indices.data):
            raise ApiError(400, "Wrong input: sparse and multi-vectors are not supported by the stand-in")
        return v.data

    def vectors(coll: Collection, v: Any) -> Any:
        kind = v.WhichOneof("vectors_options")
        if kind == "vector":
            return coll.vector(dense(v.vector))
        if kind == "vectors":
            return coll.vector({n: dense(vv) for n, vv in v.vectors.vectors.items()})
        raise ApiError(400, "Wrong input: point without vectors")

    def selector(sel: Any) -> dict:
        return dump(GrpcToRest.convert_points_selector(sel)) if sel.WhichOneof("points_selector_one_of") else {}

    def record(r: dict) -> Any:
        return qg.RetrievedPoint(
            id=RestToGrpc.convert_extended_point_id(r["id"]),
            payload=RestToGrpc.convert_payload(r["payload"]) if r["payload"] else None,
            vectors=RestToGrpc.convert_vector_struct_output(r["vector"]) if r["vector"] is not None else None)

    def update(res: dict) -> Any:
        status = qg.UpdateStatus.Completed if res["status"] == "completed" else qg.UpdateStatus.Acknowledged
        return qg.UpdateResult(operation_id=res["operation_id"], status=status)

    def guarded(fn):
        def wrapper(self, request, context):
            start = time.perf_counter()
            try:
                return fn(self, request, start)
            except ApiError as e:
                context.abort(e.grpc_code, e.message)
            except ValueError as e:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Wrong input: {e}")
        wrapper.__name__ = fn.__name__
        return wrapper

    def since(start: float) -> float:
        return time.perf_counter() - start

    def with_payload(req: Any) -> Any:
        return GrpcToRest.convert_with_payload_selector(req.with_payload) if req.HasField("with_payload") else False

    def with_vectors(req: Any) -> Any:
        return GrpcToRest.convert_with_vectors_selector(req.with_vectors) if req.HasField("with_vectors") else False

    class Points(ps.PointsServicer):
        @guarded
        def Upsert(self, req, start):  # noqa: N802
            store.maybe_fault()  # FAULT INJECTION (no-op unless fail_ratio > 0)
            coll = store.get(req.collection_name)
            items = [(grpc_id(p.id), vectors(coll, p.vectors), GrpcToRest.convert_payload(p.payload))
                     for p in req.points]
            res = store.upsert_prepared(req.collection_name, items, req.wait)
            return qg.PointsOperationResponse(result=update(res), time=since(start))

        @guarded
        def Get(self, req, start):  # noqa: N802
            wp, wv = with_payload(req), with_vectors(req)
            recs = store.retrieve(req.collection_name, [GrpcToRest.convert_point_id(i) for i in req.ids],
                                  dump(wp), dump(wv))
            return qg.GetResponse(result=[record(r) for r in recs], time=since(start))

        @guarded
        def Count(self, req, start):  # noqa: N802
            flt = dump(GrpcToRest.convert_filter(req.filter)) if req.HasField("filter") else None
            return qg.CountResponse(result=qg.CountResult(count=store.count(req.collection_name, flt)["count"]),
                                    time=since(start))

        @guarded
        def Scroll(self, req, start):  # noqa: N802
            body = {"filter": dump(GrpcToRest.convert_filter(req.filter)) if req.HasField("filter") else None,
                    "offset": GrpcToRest.convert_point_id(req.offset) if req.HasField("offset") else None,
                    "limit": req.limit if req.HasField("limit") else 10,
                    "with_payload": dump(with_payload(req)), "with_vector": dump(with_vectors(req))}
            page = store.scroll(req.collection_name, body)
            nxt = page["next_page_offset"]
            return qg.ScrollResponse(result=[record(r) for r in page["points"]], time=since(start),
                                     next_page_offset=None if nxt is None else RestToGrpc.convert_extended_point_id(nxt))

        @guarded
        def Delete(self, req, start):  # noqa: N802
            res = store.delete_points(req.collection_name, selector(req.points), req.wait)
            return qg.PointsOperationResponse(result=update(res), time=since(start))

        @guarded
        def SetPayload(self, req, start):  # noqa: N802
            body = {**selector(req.points_selector), "payload": GrpcToRest.convert_payload(req.payload),
                    "key": req.key if req.HasField("key") else None}
            res = store.set_payload(req.collection_name, body, False, req.wait)
            return qg.PointsOperationResponse(result=update(res), time=since(start))

        @guarded
        def OverwritePayload(self, req, start):  # noqa: N802
            body = {**selector(req.points_selector), "payload": GrpcToRest.convert_payload(req.payload)}
            res = store.set_payload(req.collection_name, body, True, req.wait)
            return qg.PointsOperationResponse(result=update(res), time=since(start))

        @guarded
        def UpdateBatch(self, req, start):  # noqa: N802
            ops = [dump(GrpcToRest.convert_points_update_operation(op)) for op in req.operations]
            res = store.batch(req.collection_name, ops, req.wait)
            return qg.UpdateBatchResponse(result=[update(r) for r in res], time=since(start))

    class Collections(cs.CollectionsServicer):
        @guarded
        def Get(self, req, start):  # noqa: N802
            with store.lock:
                info = store.get(req.collection_name).info()
            return qg.GetCollectionInfoResponse(
                result=RestToGrpc.convert_collection_info(models.CollectionInfo.model_validate(info)), time=since(start))

        @guarded
        def List(self, req, start):  # noqa: N802
            with store.lock:
                names = list(store.collections)
            return qg.ListCollectionsResponse(collections=[qg.CollectionDescription(name=n) for n in names],
                                              time=since(start))

        @guarded
        def CollectionExists(self, req, start):  # noqa: N802
            with store.lock:
                exists = req.collection_name in store.collections
            return qg.CollectionExistsResponse(result=qg.CollectionExists(exists=exists), time=since(start))

        @guarded
        def Create(self, req, start):  # noqa: N802
            body = {"vectors": dump(GrpcToRest.convert_vectors_config(req.vectors_config))
                    if req.HasField("vectors_config") else {}}
            ok = store.create_collection(req.collection_name, body)
            return qg.CollectionOperationResponse(result=ok, time=since(start))

        @guarded
        def Delete(self, req, start):  # noqa: N802
            return qg.CollectionOperationResponse(result=store.delete_collection(req.collection_name),
                                                  time=since(start))

        @guarded
        def ListAliases(self, req, start):  # noqa: N802
            return qg.ListAliasesResponse(aliases=[], time=since(start))

        @guarded
        def ListCollectionAliases(self, req, start):  # noqa: N802
            store.get(req.collection_name)
            return qg.ListAliasesResponse(aliases=[], time=since(start))

    class Root(qs.QdrantServicer):
        def HealthCheck(self, req, context):  # noqa: N802
            return qg.HealthCheckReply(title=TITLE, version=_client_version(), commit="standin")

    return (Points(), ps.add_PointsServicer_to_server), (Collections(), cs.add_CollectionsServicer_to_server), \
        (Root(), qs.add_QdrantServicer_to_server)


# ------------------------------------------------------------------------------------------ lifecycle

class StandinQdrant:
    """The stand-in (NOT Qdrant) in this process: REST and gRPC servers in background threads.

    Port 0 picks a free port; read the chosen ones from `.rest_port` / `.grpc_port` after `start()`."""

    def __init__(self, fail_ratio: float = 0.0, seed: int = 0, host: str = "127.0.0.1", rest_port: int = 0,
                 grpc_port: int = 0, grpc_workers: int = 8):
        self.store = Store(fail_ratio, seed)
        self.host, self._rest_port, self._grpc_port, self.grpc_workers = host, rest_port, grpc_port, grpc_workers
        self.rest_port: int | None = None
        self.grpc_port: int | None = None
        self._http: _RestServer | None = None
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
        self._http = _RestServer((self.host, self._rest_port), _RestHandler)
        self._http.api = RestApi(self.store)  # type: ignore[attr-defined]
        self.rest_port = self._http.server_address[1]
        self._thread = threading.Thread(target=self._http.serve_forever, name="standin-rest", daemon=True)
        self._thread.start()
        self._grpc = grpc.server(ThreadPoolExecutor(self.grpc_workers, thread_name_prefix="standin-grpc"),
                                 options=[("grpc.max_receive_message_length", MAX_GRPC_MESSAGE),
                                          ("grpc.max_send_message_length", MAX_GRPC_MESSAGE)])
        for servicer, add in _grpc_servicers(self.store):
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


# ------------------------------------------------------------------------------------------ self-check

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


# ------------------------------------------------------------------------------------------------ main

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
