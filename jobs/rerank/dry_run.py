"""`qbatch rerank --dry-run`: what a run checks before scoring (config, log listing, Qdrant reachable,
the collection's recorded spec when retrieval is on, the HMAC key), printed as a plan. Nothing is
scored or written."""

from __future__ import annotations

import json
import sys
from typing import TextIO


def print_plan(cfg, files, client, run_date, run_id, out: TextIO | None = None) -> dict:
    from qbatch.connectors.iceberg_config import IcebergCatalogConfig
    from qbatch.connectors.rerank_table import partition_uri
    from qbatch.jobs.rerank.committed_day import describe_day

    out = out or sys.stdout
    catalog = cfg.output.catalog or IcebergCatalogConfig(type="sql")  # the embedded catalog's defaults
    plan = {
        "run_id": run_id, "run_date": run_date.isoformat(),
        "query_log": {"uri": cfg.queries.uri, "shape": cfg.queries.shape, "files": len(files),
                      "bytes": sum(f.size for f in files), "first_files": [f.uri for f in files[:5]]},
        "documents": cfg.documents.source if cfg.documents.source == "qdrant"
        else f"corpus {cfg.documents.corpus.uri}",
        "qdrant": "reachable" if client is not None else "not needed",
        "reranker": {"model": cfg.reranker.model, "max_length": cfg.reranker.max_length,
                     "concurrency": list(cfg.reranker.concurrency), "num_gpus": cfg.reranker.num_gpus},
        "output": partition_uri(cfg.output.uri, run_date) if cfg.output.format == "parquet" else
        f"Iceberg {catalog.namespace}.{catalog.table} run_date={run_date.isoformat()}",
        "format": cfg.output.format,
        "replaces": describe_day(cfg, run_date),  # what is committed for the day now (None: nothing)
        "redact_queries": cfg.output.redact_queries,
    }
    if cfg.candidates.retrieve_top_k > 0:
        from qbatch.jobs.rerank.retrieval import recorded_spec

        spec = recorded_spec(client, cfg.qdrant.collection)
        plan["retrieval"] = {"top_k": cfg.candidates.retrieve_top_k, "collection": cfg.qdrant.collection,
                             "model": cfg.candidates.embed_model or spec.get("model"),
                             "model_revision": spec.get("model_revision"), "dim": spec.get("dim")}
    out.write("qbatch rerank --dry-run: nothing will be scored or written\n")
    out.write(json.dumps(plan, indent=2) + "\n")
    return plan
