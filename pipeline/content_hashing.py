"""Stable fingerprints of what gets embedded and what gets stored, so a rerun can skip unchanged
chunks (same content hash) and rewrite only changed payloads (same content, new payload hash)."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    """One JSON text per value: sorted keys, no spaces, no NaN; key order never changes a hash."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _sha256(text: str) -> str:
    # surrogatepass: a hash must never be the thing that fails on odd text.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def content_hash(text: str, model_fingerprint: str, dim: int | None, instruction: str | None) -> str:
    """sha256 hex of everything that decides a vector: the final text, the model, the dim and the
    instruction. A JSON list keeps the parts apart (no separator a text could imitate)."""
    return _sha256(json.dumps([text, model_fingerprint, dim, instruction], ensure_ascii=False,
                              separators=(",", ":")))


def payload_hash(payload: dict[str, Any]) -> str:
    """sha256 hex of the payload's canonical JSON."""
    return _sha256(canonical_json(payload))
