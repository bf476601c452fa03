"""A disk-backed map doc_id -> first position (file, line) for duplicate-id detection on the driver.

SQLite on local disk keeps driver memory flat for a corpus of any size; an in-memory set of 100M ids
would not be."""

from __future__ import annotations

import os
import sqlite3
import tempfile
from typing import Iterable

_CHUNK = 500  # SQLite's default max host parameters is 999


class SeenIdsStore:
    """`claim(rows)` decides, per (doc_id, file, line), whether this position owns the id."""

    def __init__(self, directory: str | None = None):
        fd, self.path = tempfile.mkstemp(prefix="qbatch-seen-", suffix=".sqlite", dir=directory)
        os.close(fd)
        self._db = sqlite3.connect(self.path)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE seen (doc_id TEXT PRIMARY KEY, file TEXT NOT NULL, line INTEGER NOT NULL)")

    def claim(self, rows: Iterable[tuple[str, str, int]]) -> list[bool]:
        """For each (doc_id, file, line): True if this position is the id's first (owning) position.
        The first position to be claimed wins; later claims from the same position also return True
        (several chunks of one document)."""
        rows = list(rows)
        owners: dict[str, tuple[str, int]] = {}
        ids = list({r[0] for r in rows})
        for i in range(0, len(ids), _CHUNK):
            part = ids[i:i + _CHUNK]
            q = f"SELECT doc_id, file, line FROM seen WHERE doc_id IN ({','.join('?' * len(part))})"
            for doc_id, file, line in self._db.execute(q, part):
                owners[doc_id] = (file, line)
        new: list[tuple[str, str, int]] = []
        result: list[bool] = []
        for doc_id, file, line in rows:
            owner = owners.get(doc_id)
            if owner is None:
                owners[doc_id] = (file, line)
                new.append((doc_id, file, line))
                result.append(True)
            else:
                result.append(owner == (file, line))
        if new:
            self._db.executemany("INSERT INTO seen VALUES (?, ?, ?)", new)
        return result

    def close(self) -> None:
        self._db.close()
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> "SeenIdsStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
