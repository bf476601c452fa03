"""connect(): local mode opens a folder; a server that cannot answer fails fast without leaking the key."""

from __future__ import annotations

import socket
import threading
import traceback
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from qdrant_client.http import models

from qbatch.common.errors import ConfigError, LockHeldError, SinkUnreachableError
from qbatch.connectors.qdrant_config import QdrantConfig
from qbatch.connectors.qdrant_connection import connect, safe_target, scrub

FAKE_KEY = "fake-qdrant-key-7f3a9c21d4e8"  # not a real credential: only checked for absence below


def closed_port() -> int:
    """A 127.0.0.1 port with nothing listening (bound, then released): the FAKE unreachable server."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_local_mode_creates_the_folder_and_persists(tmp_path):
    folder = tmp_path / "nested" / "qdrant"
    client = connect(QdrantConfig(path=str(folder)))
    try:
        assert folder.is_dir()
        client.create_collection("c", vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
    finally:
        client.close()
    client = connect(QdrantConfig(path=str(folder)))
    try:
        assert [c.name for c in client.get_collections().collections] == ["c"]
    finally:
        client.close()


_KILLED_WRITER = """
import os, sys
from qdrant_client.http import models
from qbatch.connectors.qdrant_config import QdrantConfig
from qbatch.connectors.qdrant_connection import connect
client = connect(QdrantConfig(path=sys.argv[1]))
storage = client._client.collections["c"].storage.storage
print(storage.execute("PRAGMA journal_mode").fetchone()[0], storage.execute("PRAGMA synchronous").fetchone()[0])
for start in range(0, 300, 100):
    client.upsert("c", models.Batch(ids=list(range(start, start + 100)), vectors=[[1.0, 0.0]] * 100), wait=True)
sys.stdout.flush()
os.kill(os.getpid(), 9)  # no close, no checkpoint: what a crashed writer leaves behind
"""


def test_local_writes_use_sqlite_wal_and_survive_a_killed_process(tmp_path):
    """Local mode commits once per point; qbatch's connection puts the collection's SQLite in WAL mode
    with synchronous=NORMAL (one fsync per checkpoint, not per point). Every acknowledged point must
    still be there after the writing process is SIGKILLed."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    folder = tmp_path / "q"
    client = connect(QdrantConfig(path=str(folder)))
    client.create_collection("c", vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
    client.close()
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(folder)], capture_output=True, text=True,
                          cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, timeout=120)
    assert done.returncode == -9, done.stderr
    assert done.stdout.split() == ["wal", "1"]  # synchronous=NORMAL is 1
    client = connect(QdrantConfig(path=str(folder)))
    try:
        assert client.count("c", exact=True).count == 300
    finally:
        client.close()


def test_second_client_on_the_same_folder_is_a_lock_error(tmp_path):
    cfg = QdrantConfig(path=str(tmp_path / "q"))
    first = connect(cfg)
    try:
        with pytest.raises(LockHeldError, match="one client per folder"):
            connect(cfg)
    finally:
        first.close()


@pytest.mark.parametrize("grpc", [False, True], ids=["rest", "grpc"])
def test_unreachable_server_fails_fast_naming_the_url_not_the_key(grpc):
    url = f"http://127.0.0.1:{closed_port()}"
    cfg = QdrantConfig(url=url, api_key=FAKE_KEY, prefer_grpc=grpc, timeout_s=5)
    with pytest.warns(UserWarning, match="insecure"), pytest.raises(SinkUnreachableError) as info:
        connect(cfg)
    err = info.value
    assert url in str(err)
    everything = str(err) + repr(err) + "".join(traceback.format_exception(type(err), err, err.__traceback__))
    assert FAKE_KEY not in everything
    assert err.__suppress_context__ and err.__cause__ is None


def test_key_from_the_environment_and_url_password_stay_hidden(monkeypatch):
    monkeypatch.setenv("QDRANT_API_KEY", FAKE_KEY)
    port = closed_port()
    cfg = QdrantConfig(url=f"http://admin:hunter2secret@127.0.0.1:{port}")
    assert cfg.resolve_api_key() == FAKE_KEY
    with pytest.warns(UserWarning), pytest.raises(SinkUnreachableError) as info:
        connect(cfg)
    text = str(info.value)
    assert f"http://127.0.0.1:{port}" in text and "$QDRANT_API_KEY" in text
    assert FAKE_KEY not in text and "hunter2secret" not in text


def test_safe_target_and_scrub():
    assert safe_target(QdrantConfig(url="https://u:p4ss@q.example:6333/x")) == "https://q.example:6333/x"
    assert scrub(f"Bearer {FAKE_KEY} failed", [None, "", FAKE_KEY]) == "Bearer *** failed"


class _Refuses401(BaseHTTPRequestHandler):
    """FAKE Qdrant: no server binary runs here, so a stdlib server answers every request with 401."""

    def do_GET(self):
        body = b'{"status":{"error":"Invalid api-key"}}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_rejected_key_is_a_config_error_not_a_transient_one():
    server = HTTPServer(("127.0.0.1", 0), _Refuses401)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        cfg = QdrantConfig(url=f"http://127.0.0.1:{server.server_address[1]}", api_key=FAKE_KEY)
        with pytest.warns(UserWarning), pytest.raises(ConfigError, match="refused the API key") as info:
            connect(cfg)
        assert "HTTP 401" in str(info.value) and FAKE_KEY not in str(info.value)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
