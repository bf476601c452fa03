"""What the rerank plan asks of Qdrant: the chunk-0 payload text of candidate documents, and the top
hits of query vectors, both in batches. The workers of the plan use it; the driver never does.

Against a server each worker opens its own client. Local mode (`qdrant.path`) allows one process per
folder, so there one Ray actor (`LocalQdrantActor`) owns the folder for the whole plan and every worker
sends it its requests: that one actor does both the retrieval searches and the payload lookups.

A document's text is the `text` payload of its chunk 0 (point id `point_id(doc_id, 0)`), its start:
later chunks overlap, and the reranker cuts a long pair at the document's tail anyway. A document
indexed with `qdrant.store_text = false` has no text there and counts as missing."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from qbatch.connectors.point_ids import point_id
from qbatch.connectors.qdrant_config import QdrantConfig

RETRIEVE_BATCH = 256
_CALL_TIMEOUT_S = 600.0


class QdrantRequests:
    """Payload texts and batched searches over one client; counts the requests it sends."""

    def __init__(self, client: Any, collection: str):
        self.client, self.collection = client, collection
        self.requests = {"lookup_requests": 0, "search_requests": 0}

    def texts(self, doc_ids: Iterable[str]) -> dict[str, str]:
        """Chunk-0 texts of the doc ids that have one; absent ids are left out."""
        ids = sorted(set(doc_ids))
        texts: dict[str, str] = {}
        for start in range(0, len(ids), RETRIEVE_BATCH):
            by_point = {point_id(d, 0): d for d in ids[start:start + RETRIEVE_BATCH]}
            records = self.client.retrieve(self.collection, ids=list(by_point), with_payload=True, with_vectors=False)
            self.requests["lookup_requests"] += 1
            for record in records:
                payload = record.payload or {}
                doc_id = by_point.get(str(record.id))
                text = payload.get("text")
                # The payload's doc_id must agree with the id asked for; anything else is not our document.
                if doc_id is not None and str(payload.get("doc_id")) == doc_id and isinstance(text, str) and text.strip():
                    texts[doc_id] = text
        return texts

    def search(self, vectors: Sequence[Sequence[float]], limit: int) -> list[list[tuple[str | None, float]]]:
        """One `query_batch_points` request: per vector, (doc_id, score) of its hits, best first."""
        from qdrant_client.http import models

        if not len(vectors):
            return []
        requests = [models.QueryRequest(query=[float(x) for x in v], limit=limit, with_payload=["doc_id"])
                    for v in vectors]
        responses = self.client.query_batch_points(self.collection, requests=requests)
        self.requests["search_requests"] += 1
        return [[(None if (p.payload or {}).get("doc_id") is None else str(p.payload["doc_id"]), float(p.score))
                 for p in r.points] for r in responses]


class LocalQdrantActor:
    """The one process that opens a local Qdrant folder during the plan (run as a Ray actor)."""

    def __init__(self, cfg: QdrantConfig, collection: str):
        from qbatch.connectors.qdrant_connection import connect

        self.requests = QdrantRequests(connect(cfg), collection)

    def texts(self, doc_ids: list[str]) -> dict[str, str]:
        return self.requests.texts(doc_ids)

    def search(self, vectors: list[list[float]], limit: int) -> list[list[tuple[str | None, float]]]:
        return self.requests.search(vectors, limit)

    def close(self) -> None:
        self.requests.client.close()


class QdrantCandidates:
    """Picklable: what a worker needs to reach Qdrant. `open()` in the worker gives an object with
    `texts(ids)`, `search(vectors, limit)` and `requests`, either over its own client or, in local
    mode, over the plan's one LocalQdrantActor."""

    def __init__(self, cfg: QdrantConfig, collection: str, local_actor: Any = None):
        self.cfg, self.collection, self.local_actor = cfg, collection, local_actor

    def open(self) -> Any:
        if self.local_actor is not None:
            return _ActorRequests(self.local_actor)
        from qbatch.connectors.qdrant_connection import connect

        return QdrantRequests(connect(self.cfg), self.collection)


class _ActorRequests:
    def __init__(self, actor: Any):
        self.actor = actor
        self.requests = {"lookup_requests": 0, "search_requests": 0}

    def texts(self, doc_ids: Iterable[str]) -> dict[str, str]:
        import ray

        ids = sorted(set(doc_ids))
        self.requests["lookup_requests"] += -(-len(ids) // RETRIEVE_BATCH)
        return ray.get(self.actor.texts.remote(ids), timeout=_CALL_TIMEOUT_S)

    def search(self, vectors: Sequence[Sequence[float]], limit: int) -> list[list[tuple[str | None, float]]]:
        import ray

        if not len(vectors):
            return []
        self.requests["search_requests"] += 1
        return ray.get(self.actor.search.remote([[float(x) for x in v] for v in vectors], limit),
                       timeout=_CALL_TIMEOUT_S)


def start_local_actor(cfg: QdrantConfig, collection: str) -> Any:
    """The plan's one owner of a local Qdrant folder, pinned to this node (where the folder is)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return ray.remote(num_cpus=0)(LocalQdrantActor).options(scheduling_strategy=here).remote(cfg, collection)
