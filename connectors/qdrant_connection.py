"""Open a Qdrant client from a QdrantConfig and prove it works before any row is read. Local mode and
a server differ only in the constructor; everything downstream uses the same qdrant-client API."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from qdrant_client import QdrantClient
from qdrant_client.http.exceptions import UnexpectedResponse

from qbatch.common.errors import ConfigError, LockHeldError, SinkUnreachableError
from qbatch.connectors.qdrant_config import QdrantConfig

log = logging.getLogger("qbatch.qdrant")


def safe_target(cfg: QdrantConfig) -> str:
    """What to call the target in messages: the URL without user:password, or the local folder."""
    if cfg.url is None:
        return f"local Qdrant at {Path(cfg.path or '.').resolve()}"
    parts = urlsplit(cfg.url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def scrub(text: str, secrets: list[str | None]) -> str:
    """`text` with every non-empty secret replaced by ***."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


LOCAL_LOCK_WAIT_S = 60.0  # a local folder's lock is waited for this long: Ray ends a dead run's workers in seconds


def _open_local(cfg: QdrantConfig, wait_s: float = LOCAL_LOCK_WAIT_S, poll_s: float = 0.5) -> QdrantClient:
    """A local-mode client; the folder's lock is retried for `wait_s`, because the one process allowed in
    may be a writer actor that Ray is still tearing down (after a load pass, or after its run crashed)."""
    folder = Path(cfg.path or "./qdrant-data")
    folder.mkdir(parents=True, exist_ok=True)
    deadline, waited = time.monotonic() + wait_s, False
    while True:
        try:
            return tune_local_storage(QdrantClient(path=str(folder)))
        except RuntimeError as e:
            # qdrant-client's local mode takes an exclusive file lock on the folder.
            if "already accessed" not in str(e):
                raise
            if time.monotonic() < deadline:
                if not waited:
                    log.info("local Qdrant folder %s is open in another process; waiting up to %.0f s",
                             folder.resolve(), wait_s)
                    waited = True
                time.sleep(poll_s)
                continue
            raise LockHeldError(
                f"local Qdrant folder {folder.resolve()} is open in another process; local mode allows "
                "one client per folder. Wait for it to finish or use a Qdrant server (qdrant.url)."
            ) from None


def tune_local_storage(client: QdrantClient) -> QdrantClient:
    """Local mode keeps each collection in SQLite and commits once per point; in SQLite's default
    rollback-journal mode every commit is an fsync, which costs more than the rest of the upsert. WAL
    with synchronous=NORMAL keeps every acknowledged point through a crash of any process (the WAL is
    written before the commit returns) and fsyncs at checkpoints only, so the last commits before a
    power loss may be lost: the same promise a Qdrant server makes, whose WAL is flushed on an
    interval. Reaches into qdrant-client's private local storage; if its layout changes, the client
    is used as it is, only slower."""
    collections = getattr(getattr(client, "_client", None), "collections", None) or {}
    for name, collection in collections.items():
        storage = getattr(getattr(collection, "storage", None), "storage", None)  # LocalCollection -> sqlite3
        if storage is None:
            continue
        try:
            storage.execute("PRAGMA journal_mode=WAL")
            storage.execute("PRAGMA synchronous=NORMAL")
        except Exception as e:  # noqa: BLE001 - an optimisation only; the default mode stays correct
            log.debug("local Qdrant collection %s keeps SQLite's default journal: %s", name, e)
    return client


def _open_server(cfg: QdrantConfig, api_key: str | None) -> QdrantClient:
    return QdrantClient(
        url=cfg.url,
        api_key=api_key,
        prefer_grpc=cfg.prefer_grpc,
        grpc_port=cfg.grpc_port,
        # qdrant-client types the timeout as int seconds; round up so a short timeout never becomes 0.
        timeout=max(1, math.ceil(cfg.timeout_s)),
        # The probe below is the one request we want; the version check would be a second round trip
        # that only warns, doubling the wait on an unreachable server.
        check_compatibility=False,
    )


def connect(cfg: QdrantConfig) -> QdrantClient:
    """A working client for cfg (local folder or server); SinkUnreachableError when it cannot answer."""
    if cfg.is_local:
        return _open_local(cfg)
    api_key = cfg.resolve_api_key()
    where = safe_target(cfg)
    if cfg.prefer_grpc:
        where += f" (gRPC on port {cfg.grpc_port})"  # qdrant.grpc_port, whatever port the URL names
    secrets = [api_key, urlsplit(cfg.url or "").password]
    client: QdrantClient | None = None
    try:
        client = _open_server(cfg, api_key)
        client.get_collections()
    except Exception as e:  # noqa: BLE001 - any failure of the probe means "not usable now"
        if client is not None:
            client.close()
        detail = scrub(f"{type(e).__name__}: {e}", secrets)
        if isinstance(e, UnexpectedResponse) and e.status_code in (401, 403):
            # A rejected key is not transient: retrying the job would only be refused again.
            raise ConfigError(f"Qdrant at {where} refused the API key from {_key_source(cfg)} "
                              f"(HTTP {e.status_code}); set a valid key.") from None
        # `from None`: the original exception (and its request headers) must not reach a traceback.
        raise SinkUnreachableError(
            f"cannot reach Qdrant at {where}: {detail}. Check qdrant.url, that the server is up and "
            f"that the API key (from {_key_source(cfg)}) is valid."
        ) from None
    return client


def _key_source(cfg: QdrantConfig) -> str:
    if cfg.api_key is not None:
        return "qdrant.api_key"
    if cfg.api_key_file:
        return f"file {cfg.api_key_file}"
    return f"${cfg.api_key_env}"
