"""The stand-in Qdrant's (NOT Qdrant) in-memory store: collections of `point id -> (vector, payload)`
under one lock, with the upsert / retrieve / count / scroll / delete / payload operations both APIs share,
and the optional seeded FAULT INJECTION of upserts."""

from __future__ import annotations

import random
import threading
from datetime import datetime, timezone
from typing import Any

import grpc
import numpy as np

from benchmarks.standin_qdrant.points import (ApiError, injected_fault, matches, norm_id, not_found, select_payload,
                                              select_vector)


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
        return {"id": key, "payload": select_payload(payload, with_payload),
                "vector": select_vector(vector, with_vector), "shard_key": None, "order_value": None}


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
            raise not_found(name)
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
                raise injected_fault()

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
