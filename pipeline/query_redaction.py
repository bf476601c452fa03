"""Query redaction: with `redact_queries` on, every place a query leaves the job (result tables, dead
letters, reports) carries HMAC-SHA256(key, query) as lowercase hex instead of the text. The same key
gives the same digest, so redacted tables still join across days; without the key it cannot be reversed
by guessing common queries."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any


class QueryRedactor:
    """`redact(text)`: the text itself when `key` is None, else its HMAC-SHA256 hex digest."""

    def __init__(self, key: bytes | None):
        if key is not None and not key:
            raise ValueError("the HMAC key must not be empty")
        self._key = key

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def redact(self, text: str | None) -> str | None:
        if text is None or self._key is None:
            return text
        return hmac.new(self._key, text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()

    def redact_many(self, texts: list[str | None]) -> list[str | None]:
        return [self.redact(t) for t in texts] if self.enabled else list(texts)

    def row_json(self, row: dict[str, Any], query_key: str) -> str:
        """A dead-letter `original_row`: the row as JSON with its query field redacted."""
        row = dict(row)
        if query_key in row and isinstance(row[query_key], str):
            row[query_key] = self.redact(row[query_key])
        text = json.dumps(row, ensure_ascii=False, default=str)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from a "\ud800" escape: keep it escaped
            text = json.dumps(row, default=str)
        return text

    def raw_line(self, raw: str | None) -> str | None:
        """An unparseable log line may hold a query anywhere in it: redacted, only its digest is kept."""
        if raw is None or self._key is None:
            return raw
        return json.dumps({"_raw_hmac": self.redact(raw)})
