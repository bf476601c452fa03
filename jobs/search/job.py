"""`qbatch search`: embed one query the way the collection's documents expect and print the top hits."""

from __future__ import annotations

import argparse
import sys

from qbatch.common.errors import ConfigError, GateFailedError
from qbatch.jobs.runtime.exit_codes import ExitCode
from qbatch.jobs.index.config import IndexConfig
from qbatch.jobs.runtime.logging_setup import configure_logging


def parse_filters(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--filter {item!r}: expected FIELD=VALUE, e.g. lang=de")
        out[key.strip()] = value.strip()
    return out


def run_search(cfg: IndexConfig, args: argparse.Namespace) -> int:
    configure_logging(getattr(args, "log_format", "text"), getattr(args, "log_level", "WARNING"))
    filters = parse_filters(args.filter)
    if args.k < 1:
        raise ConfigError("--k must be at least 1")
    from qbatch.connectors.qdrant_connection import connect

    client = connect(cfg.qdrant)
    try:
        return _search(cfg, args, client, filters)
    finally:
        client.close()


def _search(cfg: IndexConfig, args, client, filters) -> int:
    from qbatch.connectors.collection_guard import read_spec
    from qbatch.connectors.qdrant_search import search
    from qbatch.pipeline.embedder import Embedder

    name = cfg.qdrant.collection
    recorded = read_spec(client, name)
    if recorded is None:
        raise GateFailedError(f"collection or alias {name!r} does not exist or was not built by qbatch")
    embedder = Embedder.from_pretrained(cfg.embed.model, dim=recorded.get("dim"), max_length=cfg.embed.max_length,
                                        device=cfg.embed.device, dtype=cfg.embed.dtype)
    if embedder.model_fingerprint["sha"] != recorded.get("model_revision"):
        raise GateFailedError(f"collection {name!r} was built with {recorded.get('model')} "
                              f"({recorded.get('model_revision')}), not {cfg.embed.model}")
    instruction = (recorded.get("instructions") or {}).get("query") or cfg.embed.query_instruction
    vector = embedder.embed_queries([args.query], instruction=instruction)[0]
    hits = search(client, name, vector, k=args.k, filter=filters or None)
    print_hits(hits, sys.stdout)
    return int(ExitCode.OK)


def print_hits(hits, out) -> None:
    out.write(f"{'#':>3}  {'score':>7}  {'doc_id':<24} snippet\n")
    for rank, hit in enumerate(hits, 1):
        out.write(f"{rank:>3}  {hit.score:7.4f}  {str(hit.doc_id)[:24]:<24} {hit.snippet}\n")
