from __future__ import annotations

import pytest

from qbatch.common.errors import ConfigError
from qbatch.jobs.runtime.config_loading import apply_overrides, load_config, parse_override_value
from qbatch.jobs.index.config import IndexConfig
from qbatch.jobs.runtime.run_fields import normalise_run_id


def test_override_values_are_toml_literals():
    assert parse_override_value("512") == 512
    assert parse_override_value("true") is True
    assert parse_override_value("[1, 4]") == [1, 4]
    assert parse_override_value("'a b'") == "a b"
    assert parse_override_value("s3://bucket/x") == "s3://bucket/x"


def test_overrides_nest_and_do_not_mutate_input():
    base = {"embed": {"dim": 64}}
    out = apply_overrides(base, ["embed.dim=128", "run.run_id=abc"])
    assert out == {"embed": {"dim": 128}, "run": {"run_id": "abc"}}
    assert base == {"embed": {"dim": 64}}


def test_yaml_and_toml_load_the_same(tmp_path):
    (tmp_path / "a.toml").write_text('[source]\nuri = "/data"\n[embed]\nmodel = "m"\nconcurrency = [1, 3]\n')
    (tmp_path / "a.yaml").write_text("source:\n  uri: /data\nembed:\n  model: m\n  concurrency: [1, 3]\n")
    a = load_config(IndexConfig, tmp_path / "a.toml")
    b = load_config(IndexConfig, tmp_path / "a.yaml")
    assert a == b and a.embed.concurrency == (1, 3)


def test_local_mode_with_parallel_writers_is_refused():
    with pytest.raises(ConfigError, match="parallel_writers"):
        load_config(IndexConfig, None, ["source.uri=/d", "embed.model=m", "qdrant.parallel_writers=4"])


def test_scheduler_run_ids_become_collection_safe():
    assert normalise_run_id("scheduled__2026-11-28T00:00:00+00:00") == "scheduled__2026-11-28T00-00-00-00-00"
    assert normalise_run_id("manual__x") == "manual__x"
    with pytest.raises(ValueError):
        normalise_run_id(":::")
