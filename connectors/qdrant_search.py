"""Nearest-neighbour search over a qbatch collection (or the alias in front of it), returning hits
in the shape people read: document, chunk, score and a text snippet."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client.http import models

# Payload fields the index job writes for every point.
DOC_ID_FIELD = "doc_id"
CHUNK_FIELD = "chunk"
TEXT_FIELD = "text"


@dataclass(frozen=True)
class Hit:
    """One search result; `snippet` is empty when the collection was built with store_text=False."""

    id: str
    score: float
    doc_id: str | None
    chunk: int | None
    snippet: str
    payload: dict[str, Any] = field(default_factory=dict)


def snippet_of(text: str, max_chars: int) -> str:
    """The text cut to at most max_chars, at a word boundary when there is one, with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars - 1]
    # Only back up to a space if that keeps most of the snippet; a single long token is cut mid-word.
    space = cut.rfind(" ")
    if space > max_chars // 2:
        cut = cut[:space]
    return cut + "…"


def match_filter(conditions: dict[str, str | int | bool] | None) -> models.Filter | None:
    """A filter requiring payload `field == value` for every entry (AND); None for no conditions."""
    if not conditions:
        return None
    return models.Filter(must=[
        models.FieldCondition(key=k, match=models.MatchValue(value=v)) for k, v in sorted(conditions.items())])


def search(client: QdrantClient, collection_or_alias: str, vector: np.ndarray | list[float], k: int = 10,
           filter: dict[str, str | int | bool] | None = None, snippet_chars: int = 200) -> list[Hit]:
    """The k nearest points to `vector`, best first, optionally restricted by `field=value` filters."""
    query = np.asarray(vector, dtype=np.float32)
    if query.ndim != 1 or not np.isfinite(query).all():
        raise ValueError(f"query vector must be one finite 1-D vector, got shape {query.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    response = client.query_points(collection_or_alias, query=query.tolist(), query_filter=match_filter(filter),
                                   limit=k, with_payload=True, with_vectors=False)
    hits = []
    for p in response.points:
        payload = dict(p.payload or {})
        chunk = payload.get(CHUNK_FIELD)
        hits.append(Hit(
            id=str(p.id), score=float(p.score),
            doc_id=None if payload.get(DOC_ID_FIELD) is None else str(payload[DOC_ID_FIELD]),
            chunk=int(chunk) if isinstance(chunk, (int, float)) and not isinstance(chunk, bool) else None,
            snippet=snippet_of(str(payload.get(TEXT_FIELD) or ""), snippet_chars), payload=payload))
    return hits
