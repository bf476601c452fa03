"""What the stand-in Qdrant (NOT Qdrant) answers with and matches on: point ids as Qdrant
normalises them, filter conditions, payload and vector selectors, and the API error it raises."""

from __future__ import annotations

import json
import uuid
from typing import Any

import grpc


TITLE = "qdrant - vector search engine (STAND-IN for benchmarks, not Qdrant)"
READY_PREFIX = "STANDIN-QDRANT READY"
MAX_GRPC_MESSAGE = 256 * 1024 * 1024


def client_version() -> str:
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


def not_found(name: str) -> ApiError:
    return ApiError(404, f"Not found: Collection `{name}` doesn't exist!", grpc.StatusCode.NOT_FOUND)


def injected_fault() -> ApiError:
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


def select_payload(payload: dict | None, with_payload: Any) -> dict | None:
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


def select_vector(vector: Any, with_vector: Any) -> Any:
    if not with_vector or vector is None:
        return None
    if isinstance(vector, dict):
        names = vector if with_vector is True else [n for n in with_vector if n in vector]
        return {n: vector[n].tolist() for n in names}
    if with_vector is True or "" in with_vector:
        return vector.tolist()
    return None
