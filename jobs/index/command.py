"""`qbatch index`: parse flags, load the typed config, hand over to the index job."""

from __future__ import annotations

import argparse

from qbatch.jobs.index.config import IndexAdminConfig, IndexConfig
from qbatch.jobs.runtime.job_arguments import add_job_arguments, load_job_config

ACTIONS = ("run", "status", "rollback")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", default="run", choices=ACTIONS,
                        help="run (default): index the source behind the alias (qdrant.collection); "
                             "status: list the alias's kept collections; rollback: point the alias at the previous one")
    parser.add_argument("--alias", default=None, help="alias to act on (same as --set qdrant.collection=ALIAS)")
    add_job_arguments(parser, IndexConfig, "qbatch index --config configs/catalog.toml --set embed.dim=512\n"
                                           "  qbatch index status --config configs/catalog.toml --alias catalog")


def run(args: argparse.Namespace) -> int:
    if args.alias:
        args.overrides = [*args.overrides, f"qdrant.collection={args.alias}"]
    if args.action in ("status", "rollback"):
        from qbatch.jobs.index.admin import run_admin

        return run_admin(load_job_config(args, IndexAdminConfig), args)
    config = load_job_config(args, IndexConfig)
    from qbatch.jobs.index.job import run_index  # heavy imports only once a run really starts

    return run_index(config, args)
