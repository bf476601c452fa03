"""`qbatch search "query"`: embed one query with the configured query instruction and print the top
hits of the collection or alias. Teams use it to check an index by hand."""

from __future__ import annotations

import argparse

from qbatch.jobs.index.config import IndexConfig
from qbatch.jobs.runtime.job_arguments import add_job_arguments, load_job_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", help="query text")
    parser.add_argument("--k", type=int, default=10, help="hits to show")
    parser.add_argument("--filter", action="append", default=[], metavar="FIELD=VALUE",
                        help="payload match filter, e.g. --filter lang=de (repeatable)")
    add_job_arguments(parser, IndexConfig, 'qbatch search "wireless earbuds" --config configs/catalog.toml --k 5')


def run(args: argparse.Namespace) -> int:
    config = load_job_config(args, IndexConfig)
    from qbatch.jobs.search.job import run_search

    return run_search(config, args)
