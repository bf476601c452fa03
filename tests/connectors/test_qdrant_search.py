"""search(): upsert known vectors into real local-mode Qdrant, query, and check order and fields."""

from __future__ import annotations

import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client.http import models

from qbatch.connectors.point_ids import point_id
from qbatch.connectors.qdrant_aliases import switch_alias
from qbatch.connectors.qdrant_search import search, snippet_of
from qbatch.connectors.qdrant_writer import PointWriter

DOCS = [  # (doc_id, chunk, lang, vector, text)
    ("a", 0, "en", [1.0, 0.0, 0.0], "alpha " * 100),
    ("a", 1, "en", [0.9, 0.1, 0.0], "alpha two"),
    ("b", 0, "de", [0.8, 0.0, 0.2], "beta"),
    ("c", 0, "en", [0.0, 1.0, 0.0], "gamma"),
]


@pytest.fixture
def client(tmp_path):
    c = QdrantClient(path=str(tmp_path / "q"))
    c.create_collection("docs__1", vectors_config=models.VectorParams(size=3, distance=models.Distance.COSINE))
    with PointWriter(c, "docs__1", batch_size=10) as w:
        w.write([point_id(d, k) for d, k, *_ in DOCS], np.array([v for *_, v, _ in DOCS]),
                [{"doc_id": d, "chunk": k, "lang": lang, "text": t} for d, k, lang, _, t in DOCS])
    yield c
    c.close()


def test_results_come_back_best_first_with_their_fields(client):
    hits = search(client, "docs__1", [1.0, 0.0, 0.0], k=3)
    assert [(h.doc_id, h.chunk) for h in hits] == [("a", 0), ("a", 1), ("b", 0)]
    assert hits[0].score == pytest.approx(1.0) and hits[0].score > hits[1].score > hits[2].score
    assert hits[0].id == point_id("a", 0)
    assert hits[1].snippet == "alpha two" and hits[1].payload["lang"] == "en"
    assert len(hits[0].snippet) <= 200 and hits[0].snippet.endswith("…")


def test_filters_and_aliases(client):
    switch_alias(client, "docs", "docs__1")
    hits = search(client, "docs", np.array([1.0, 0.0, 0.0]), k=10, filter={"lang": "en"})
    assert [(h.doc_id, h.chunk) for h in hits] == [("a", 0), ("a", 1), ("c", 0)]
    assert [h.doc_id for h in search(client, "docs", [1, 0, 0], k=10, filter={"lang": "de", "chunk": 0})] == ["b"]
    assert search(client, "docs", [1, 0, 0], filter={"lang": "fr"}) == []


def test_bad_queries_are_refused(client):
    with pytest.raises(ValueError, match="finite 1-D"):
        search(client, "docs__1", [np.nan, 0, 0])
    with pytest.raises(ValueError, match="k must be"):
        search(client, "docs__1", [1, 0, 0], k=0)


def test_snippet_of():
    assert snippet_of("short  text\n", 50) == "short text"
    assert snippet_of("one two three four", 12) == "one two…"
    assert snippet_of("x" * 30, 10) == "x" * 9 + "…"
