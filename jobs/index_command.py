"""`qbatch index`: parse flags, load the typed config, hand over to the index job."""

from __future__ import annotations

import argparse

from jobs.index_config import IndexConfig
from jobs.job_arguments import add_job_arguments, load_job_config

ACTIONS = ("run",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", default="run", choices=ACTIONS,
                        help="run (default): index the source into the collection")
    add_job_arguments(parser, IndexConfig, "qbatch index --config configs/catalog.toml --set embed.dim=512")


def run(args: argparse.Namespace) -> int:
    config = load_job_config(args, IndexConfig)
    from jobs.index_job import run_index  # heavy imports only once a run really starts

    return run_index(config, args)
