"""Retrieval mode of `qbatch rerank`: queries logged without candidates get the top k of the Qdrant alias.

Everything that shapes the query vector (model, dim, query instruction, max_length) is read from the
collection's recorded spec, never from a second config, so the query lands in the documents' space.
The recorded model name is loaded as is; `candidates.embed_model` may point at a local copy instead,
but only when its checkpoint digest equals the recorded `model_revision`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qbatch.common.errors import ConfigError, GateFailedError
from qbatch.pipeline.query_log import Candidate, QueryGroup

if TYPE_CHECKING:  # pragma: no cover
    from qbatch.jobs.rerank.config import RerankConfig

log = logging.getLogger("qbatch.rerank")
_EMBED_BATCH = 64


def recorded_spec(client, collection: str) -> dict[str, Any]:
    from qbatch.connectors.collection_guard import read_spec

    spec = read_spec(client, collection)
    if spec is None:
        raise GateFailedError(f"qdrant.collection {collection!r} does not exist or was not built by qbatch index; "
                              "retrieval (candidates.retrieve_top_k) needs the index's recorded spec")
    return spec


@dataclass
class Retriever:
    client: Any
    collection: str
    embedder: Any
    instruction: str | None
    k: int

    @classmethod
    def load(cls, client, cfg: "RerankConfig") -> "Retriever":
        """Start the query embedder the collection's spec asks for (a Ray actor on the reranker's GPUs
        unless `candidates.embed_num_gpus` says otherwise); `close()` gives it back."""
        from qbatch.jobs.runtime.query_embedder import RemoteQueryEmbedder

        collection, cand = cfg.qdrant.collection, cfg.candidates
        spec = recorded_spec(client, collection)
        path = cand.embed_model or spec.get("model")
        kwargs = {"name_or_path": path, "dim": spec.get("dim"), "max_length": int(spec.get("max_length") or 8192),
                  "device": cand.embed_device}
        num_gpus = cfg.reranker.num_gpus if cand.embed_num_gpus is None else cand.embed_num_gpus
        try:
            embedder = RemoteQueryEmbedder.start(kwargs, num_gpus, "reranker.resources_wait_s",
                                                 cfg.reranker.resources_wait_s)
        except TimeoutError:  # an OSError too, but a slow cluster is no config error
            raise
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot load the embedding model {path!r} recorded for {collection!r} ({e}); "
                              "set candidates.embed_model to a local copy of it") from None
        if embedder.model_fingerprint["sha"] != spec.get("model_revision"):
            embedder.close()
            raise GateFailedError(f"{path} has digest {embedder.model_fingerprint['sha']}, but {collection!r} was built "
                                  f"with {spec.get('model')} ({spec.get('model_revision')}): its vectors would not match")
        instruction = (spec.get("instructions") or {}).get("query")
        return cls(client, collection, embedder, instruction, cand.retrieve_top_k)

    def close(self) -> None:
        self.embedder.close()

    def fill(self, groups: list[QueryGroup]) -> int:
        """Give every group without candidates the alias's top k documents; returns candidates added."""
        from qbatch.connectors.qdrant_search import search

        empty = [g for g in groups if not g.candidates]
        added = 0
        for start in range(0, len(empty), _EMBED_BATCH):
            part = empty[start:start + _EMBED_BATCH]
            vectors = self.embedder.embed_queries([g.query for g in part], instruction=self.instruction)
            for group, vector in zip(part, vectors):
                # Chunked documents can hit several times: over-fetch, keep each doc's best chunk.
                hits = search(self.client, self.collection, vector, k=self.k * 3)
                for hit in hits:
                    if hit.doc_id is None or any(c.doc_id == hit.doc_id for c in group.candidates):
                        continue
                    group.candidates.append(Candidate(hit.doc_id, len(group.candidates) + 1, hit.score, None,
                                                      source="retrieved"))
                    if len(group.candidates) == self.k:
                        break
                added += len(group.candidates)
        return added
