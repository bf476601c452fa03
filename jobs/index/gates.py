"""Run the validation gates of an index run against Qdrant and collect their results for the report.
The gate arithmetic is in pipeline/validation_gates.py; this module fetches the figures."""

from __future__ import annotations

import logging

from qbatch.common.errors import ConfigError, GateFailedError
from qbatch.jobs.index.config import IndexConfig

log = logging.getLogger("qbatch.index")


def load_golden(cfg: IndexConfig) -> dict[str, list[str]] | None:
    from qbatch.pipeline.validation_gates import load_golden_queries

    from qbatch.connectors.object_store import read_bytes

    uri = cfg.gates.golden_queries
    if not uri:
        return None
    data = read_bytes(uri, cfg.source.storage)  # a local path or s3://
    if data is None:
        raise ConfigError(f"gates.golden_queries: {uri} does not exist")
    return load_golden_queries(data.decode("utf-8").splitlines(), source=uri)


def embed_queries_remote(cfg: IndexConfig, queries: list[str], dim: int, instruction: str | None):
    """Embed golden queries in a Ray actor with the embed actors' GPUs (the driver may have none),
    waiting for them at most `embed.resources_wait_s`."""
    from qbatch.jobs.runtime.query_embedder import RemoteQueryEmbedder

    kwargs = {"name_or_path": cfg.embed.model, "dim": dim, "max_length": cfg.embed.max_length,
              "device": cfg.embed.device, "dtype": cfg.embed.dtype}
    with RemoteQueryEmbedder.start(kwargs, cfg.embed.num_gpus, "embed.resources_wait_s",
                                   cfg.embed.resources_wait_s) as embedder:
        return embedder.embed_queries(queries, instruction=instruction)


def golden_recall_of(client, collection: str, golden: dict[str, list[str]], vectors, k: int,
                     without: set[str] | frozenset[str] = frozenset()) -> float:
    """Golden recall@k of `collection`, as if the documents in `without` were already deleted."""
    from qbatch.connectors.qdrant_search import search
    from qbatch.pipeline.validation_gates import golden_recall

    results = {}
    for query, vector in zip(golden, vectors):
        # Several chunks of one document can rank: ask for more, recall counts distinct documents.
        limit = k * 4
        while True:
            hits = search(client, collection, vector, k=limit)
            docs = [h.doc_id for h in hits if h.doc_id not in without]
            if len(set(docs)) >= k or len(hits) < limit or limit >= 10_000:
                break
            limit *= 4  # the deleted documents took the places: look further down
        results[query] = docs
    return golden_recall(results, golden, k)


class GateBook:
    """Collects gate results; `enforce()` raises GateFailedError naming every failed gate."""

    def __init__(self):
        self.results = []

    def add(self, result) -> None:
        self.results.append(result)
        log.info("gate %s: %s %s", result.name, "pass" if result.passed else "FAIL", result.figures)

    def as_report(self) -> list[dict]:
        return [{"gate": r.name, "passed": r.passed, **r.figures, "message": r.message} for r in self.results]

    def enforce(self, where: str) -> None:
        failed = [r for r in self.results if not r.passed]
        if failed:
            raise GateFailedError(f"{where}: " + "; ".join(f"{r.name}: {r.message}" for r in failed))
