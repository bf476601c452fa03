"""Retrieval mode of `qbatch rerank`, the driver's part: queries logged without candidates get the top k
of the Qdrant alias, found by the prepare plan's query-embedding actors (pipeline/candidate_lookup.py).

Everything that shapes the query vector (model, dim, query instruction, max_length) is read from the
collection's recorded spec, never from a second config, so the query lands in the documents' space.
The recorded model name is loaded as is; `candidates.embed_model` may point at a local copy instead,
but only when its checkpoint digest equals the recorded `model_revision`: a local checkpoint is checked
here, before any work, and every actor checks the model it loaded."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

from qbatch.common.errors import ConfigError, GateFailedError

if TYPE_CHECKING:  # pragma: no cover
    from qbatch.jobs.rerank.config import RerankConfig
    from qbatch.jobs.rerank.prepare_plan import RetrievalPlan


def recorded_spec(client, collection: str) -> dict[str, Any]:
    from qbatch.connectors.collection_guard import read_spec

    spec = read_spec(client, collection)
    if spec is None:
        raise GateFailedError(f"qdrant.collection {collection!r} does not exist or was not built by qbatch index; "
                              "retrieval (candidates.retrieve_top_k) needs the index's recorded spec")
    return spec


def retrieval_plan(client, cfg: "RerankConfig", cpus: float) -> "RetrievalPlan":
    """What the retrieval actors load and how many there are; a local checkpoint that is missing or is
    not the collection's model fails here."""
    from qbatch.jobs.rerank.prepare_plan import RetrievalPlan
    from qbatch.pipeline.encoder_checkpoint import _looks_like_path, checkpoint_digest, resolve_checkpoint

    collection, cand = cfg.qdrant.collection, cfg.candidates
    spec = recorded_spec(client, collection)
    path = cand.embed_model or spec.get("model")
    if path and (_looks_like_path(path) or os.path.exists(os.path.expanduser(path))):
        try:
            digest = checkpoint_digest(resolve_checkpoint(path))
        except FileNotFoundError as e:
            raise ConfigError(f"cannot load the embedding model {path!r} recorded for {collection!r} ({e}); "
                              "set candidates.embed_model to a local copy of it") from None
        if digest != spec.get("model_revision"):
            raise GateFailedError(f"{path} has digest {digest}, but {collection!r} was built with {spec.get('model')} "
                                  f"({spec.get('model_revision')}): its vectors would not match")
    num_gpus = cfg.reranker.num_gpus if cand.embed_num_gpus is None else cand.embed_num_gpus
    threads = None if num_gpus else max(1, math.floor(cpus / cand.embed_concurrency[1]))
    return RetrievalPlan(
        embedder_kwargs={"name_or_path": path, "dim": spec.get("dim"), "max_length": int(spec.get("max_length") or 8192),
                         "device": cand.embed_device},
        instruction=(spec.get("instructions") or {}).get("query"), expected_revision=spec.get("model_revision"),
        k=cand.retrieve_top_k, batch_size=cand.search_batch_size, concurrency=tuple(cand.embed_concurrency),
        num_gpus=float(num_gpus or 0.0), torch_threads=threads)
