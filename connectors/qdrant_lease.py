"""The driver's Qdrant client, which it can hand over for a while.

Local mode allows one client per folder, and during the load pass that client belongs to the one
Qdrant writer actor (connectors/qdrant_writer_stage.py). `released()` closes the driver's client for
the duration and opens a new one afterwards, waiting while the folder's lock is still held (Ray tears
actors down asynchronously; connectors/qdrant_connection.py waits for a local folder's lock). Against
a server nothing is released; the code path is the same."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from qbatch.connectors import qdrant_connection
from qbatch.connectors.qdrant_config import QdrantConfig


def writer_config(cfg: QdrantConfig) -> QdrantConfig:
    """The config a writer actor opens its own client with: a local folder as an absolute path (an
    actor's working directory is not the driver's) and the API key resolved here, once."""
    update: dict = {}
    if cfg.is_local:
        update["path"] = str(Path(cfg.path or "./qdrant-data").resolve())
    else:
        key = cfg.resolve_api_key()
        if key is not None:
            from pydantic import SecretStr

            update.update(api_key=SecretStr(key), api_key_file=None)
    return cfg.model_copy(update=update)


class QdrantLease:
    """Forwards every call to the current client; `released()` hands a local folder to the writer stage."""

    def __init__(self, cfg: QdrantConfig, client):
        self._cfg, self._client, self._lent = cfg, client, False

    def __getattr__(self, name: str):
        if self.__dict__.get("_lent"):
            raise RuntimeError(f"the driver's Qdrant client is released to the writer stage; {name} is not "
                               "available until the load pass ends")
        if self.__dict__.get("_client") is None:  # released by a load pass that failed: open it on first use
            self._client = qdrant_connection.connect(self._cfg)
        return getattr(self._client, name)

    @contextmanager
    def released(self) -> Iterator[None]:
        if not self._cfg.is_local:
            yield
            return
        self._client.close()
        self._client, self._lent = None, True
        try:
            yield
        except BaseException:
            # The failed pass's writer actor may hold the folder until the error has unwound: reopen on
            # first use, and never let a wait for the folder hide the error itself.
            self._lent = False
            raise
        self._lent = False
        self._client = qdrant_connection.connect(self._cfg)  # waits while the writer actor winds down

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
