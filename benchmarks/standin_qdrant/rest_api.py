"""The stand-in Qdrant's (NOT Qdrant) REST API: routes, JSON shapes as real Qdrant answers them, and
the threading HTTP server."""

from __future__ import annotations

import json
import re
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import grpc

from benchmarks.standin_qdrant.points import ApiError, Raw, TITLE, client_version
from benchmarks.standin_qdrant.store import Store


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
        return Raw(title=TITLE, version=client_version(), commit="standin")

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


class RestHandler(BaseHTTPRequestHandler):
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


class RestServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
