"""Flags every job command shares. The config itself is never duplicated as flags: `--set` reaches
every field, and `--help` lists them from the typed config."""

from __future__ import annotations

import argparse

from pydantic import BaseModel

from qbatch.jobs.runtime.config_loading import describe_fields, load_config


def add_job_arguments(parser: argparse.ArgumentParser, config_model: type[BaseModel], example: str) -> None:
    parser.add_argument("--config", "-c", metavar="FILE", help="TOML or YAML config file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set embed.dim=512 (repeatable)")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate config, list the source, check the sink and guard, estimate tokens; embed nothing")
    add_runtime_arguments(parser)
    parser.epilog = f"example:\n  {example}\n\nconfig fields (--set KEY=VALUE):\n" + "\n".join(describe_fields(config_model))


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ray-address", default=None, metavar="ADDR",
                        help="existing Ray cluster (ray://host:10001 or auto); default: RAY_ADDRESS, else a local Ray")
    parser.add_argument("--log-format", choices=["text", "json"], default="text", help="log line format")
    parser.add_argument("--log-level", default="INFO", help="log level")
    parser.add_argument("--metrics-pushgateway", default=None, metavar="URL",
                        help="push run metrics to this Prometheus Pushgateway at the end")


def load_job_config(args: argparse.Namespace, config_model: type[BaseModel]):
    return load_config(config_model, args.config, args.overrides)
