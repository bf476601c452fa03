"""`qbatch rerank`: parse flags, load the typed config, hand over to the rerank job."""

from __future__ import annotations

import argparse

from qbatch.jobs.runtime.job_arguments import add_job_arguments, load_job_config
from qbatch.jobs.rerank.config import RerankConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_job_arguments(parser, RerankConfig, "qbatch rerank --config configs/rerank-daily.toml "
                                            "--set output.run_date=2026-11-27 --dry-run")


def run(args: argparse.Namespace) -> int:
    config = load_job_config(args, RerankConfig)
    from qbatch.jobs.rerank.job import run_rerank  # heavy imports only once a run really starts

    return run_rerank(config, args)
