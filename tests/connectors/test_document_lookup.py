"""Candidate texts from a corpus (index-job id/text rules) and from the index's Qdrant payload."""

from __future__ import annotations

import json

from qdrant_client import QdrantClient
from qdrant_client.http import models

from qbatch.connectors.document_lookup import corpus_texts, payload_texts
from qbatch.connectors.point_ids import point_id
from qbatch.connectors.source_config import SourceConfig


def test_corpus_texts_normalise_ids_and_keep_the_first(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join([json.dumps({"id": 7, "title": "Seven", "body": "first"}),
                                 json.dumps({"id": "7", "title": "Seven", "body": "second"}),
                                 json.dumps({"id": " x ", "title": "X", "body": "b"}),
                                 json.dumps({"id": "empty", "title": "", "body": " "}),
                                 "{broken"]) + "\n")
    texts = corpus_texts(SourceConfig(uri=str(corpus)), "id", None, "{title}\n{body}", {"7", "x", "empty", "nope"})
    assert texts == {"7": "Seven\nfirst", "x": "X\nb"}


def test_payload_texts_read_chunk_zero_by_point_id(tmp_path):
    client = QdrantClient(path=str(tmp_path / "qd"))
    client.create_collection("c1", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
    points = [models.PointStruct(id=point_id(d, ch), vector=[1.0, 0.0, 0.0, float(i)],
                                 payload={"doc_id": d, "chunk": ch, "text": f"{d} chunk {ch}"})
              for i, (d, ch) in enumerate([("a", 0), ("a", 1), ("b", 1), ("c", 0)])]
    client.upsert("c1", points)
    client.update_collection_aliases(change_aliases_operations=[
        models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name="c1", alias_name="live"))])
    assert payload_texts(client, "live", ["a", "b", "c", "zz"]) == {"a": "a chunk 0", "c": "c chunk 0"}
    client.close()
