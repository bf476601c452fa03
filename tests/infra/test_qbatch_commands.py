"""Every `qbatch ...` command a scheduler runs is a real subcommand with valid flags, and the config it
names loads, with its `--set` overrides, into the right typed config."""

from __future__ import annotations

import pytest

from qbatch.jobs import cli
from qbatch.jobs.runtime.config_loading import load_config
from qbatch.jobs.index.config import IndexConfig
from qbatch.jobs.rerank.config import RerankConfig
from tests.infra.manifest_files import qbatch_commands, repo_path

CONFIG_MODELS = {"index": IndexConfig, "search": IndexConfig, "rerank": RerankConfig}
COMMANDS = qbatch_commands()


def test_commands_were_found_in_every_scheduler():
    sources = {c.source.split(":")[0] for c in COMMANDS}
    assert {"rayjob-nightly-incremental.yaml", "rayjob-weekly-full.yaml", "rayjob-daily-rerank.yaml",
            "cronjob.yaml", "qbatch_dag.py"} <= sources


def _option(argv: list[str], *names: str) -> list[str]:
    return [argv[i + 1] for i, word in enumerate(argv[:-1]) if word in names]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.source)
def test_command_config_loads_with_its_overrides(command):
    subcommand = command.argv[0]
    assert subcommand in CONFIG_MODELS, f"{command.source}: unknown qbatch subcommand {subcommand!r}"
    (config,) = _option(command.argv, "--config", "-c")
    config_file = repo_path(config)
    assert config_file.is_file(), f"{command.source}: {config} is not in configs/"
    loaded = load_config(CONFIG_MODELS[subcommand], config_file, _option(command.argv, "--set"))
    if subcommand == "index":
        assert loaded.embed.model.startswith("Qwen/Qwen3-Embedding")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.source)
def test_command_parses_with_the_real_cli(command):
    if command.argv[0] not in cli.COMMANDS:
        pytest.skip(f"`qbatch {command.argv[0]}` is not registered in jobs/cli.py yet")
    args = cli.build_parser().parse_args(command.argv)
    assert args.command == command.argv[0]
    assert args.log_format == "json"  # scheduler logs are parsed by log pipelines
    assert not args.dry_run


def test_every_scheduled_index_run_passes_the_schedulers_run_id():
    """A scheduler's id keeps its retries idempotent; without one, a retry after midnight would start over."""
    run_ids = {}
    for command in (c for c in COMMANDS if c.argv[0] == "index"):
        ids = [s.split("=", 1)[1] for s in _option(command.argv, "--set") if s.startswith("run.run_id=")]
        assert len(ids) == 1 and ids[0], f"{command.source}: no run.run_id"
        run_ids[command.source] = ids[0]
    assert len(run_ids) >= 3
    # The same night, never one id for both modes.
    assert run_ids["rayjob-nightly-incremental.yaml"] != run_ids["rayjob-weekly-full.yaml"]


def test_weekly_full_is_the_nightly_config_in_full_mode():
    by_source = {c.source: c for c in COMMANDS}
    nightly, weekly = by_source["rayjob-nightly-incremental.yaml"], by_source["rayjob-weekly-full.yaml"]
    load = lambda c: load_config(IndexConfig, repo_path(_option(c.argv, "--config")[0]), _option(c.argv, "--set"))
    assert load(nightly).run.mode == "incremental" and load(weekly).run.mode == "full"
    assert _option(nightly.argv, "--config") == _option(weekly.argv, "--config")


def test_rerank_commands_read_and_write_the_same_day():
    for command in COMMANDS:
        if command.argv[0] != "rerank":
            continue
        config = load_config(RerankConfig, repo_path(_option(command.argv, "--config")[0]), _option(command.argv, "--set"))
        assert config.output.run_date is not None, command.source
        assert config.queries.glob.startswith(f"dt={config.output.run_date.isoformat()}/"), command.source
        assert config.output.redact_queries
