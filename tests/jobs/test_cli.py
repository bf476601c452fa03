"""The CLI surface: instant --help (no torch/ray import), exit codes, config errors naming fields."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from qbatch.jobs import cli
from qbatch.jobs.runtime.exit_codes import TRANSIENT, ExitCode, exit_code_for, is_transient
from qbatch.common.errors import ConfigError, LockHeldError, ResourcesUnavailableError, SinkUnreachableError


def _run_py(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_help_imports_no_heavy_modules():
    code = (
        "import sys, json\n"
        "from jobs import cli\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "for c in ['index', 'search']:\n"
        "    try:\n        cli.main([c, '--help'])\n    except SystemExit:\n        pass\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'ray', 'qdrant_client', 'pyarrow.dataset') if m in sys.modules)\n"
        "print(json.dumps(heavy))\n"
    )
    out = _run_py(code)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
    assert "embed.dim" in out.stdout  # config fields are listed from the typed config


def test_exit_codes_are_distinct_and_transient_set_is_small():
    values = [c.value for c in ExitCode]
    assert len(values) == len(set(values)) == 9
    assert TRANSIENT == {ExitCode.SINK_UNREACHABLE, ExitCode.INTERNAL_ERROR, ExitCode.RESOURCES_UNAVAILABLE}
    assert not is_transient(ExitCode.CONFIG_ERROR) and not is_transient(ExitCode.GATE_FAILED)
    assert exit_code_for(ConfigError("x")) == ExitCode.CONFIG_ERROR
    assert exit_code_for(LockHeldError("x")) == ExitCode.LOCKED
    assert exit_code_for(SinkUnreachableError("x")) == ExitCode.SINK_UNREACHABLE
    assert exit_code_for(ResourcesUnavailableError("x")) == ExitCode.RESOURCES_UNAVAILABLE == 8
    assert exit_code_for(RuntimeError("x")) == ExitCode.INTERNAL_ERROR


def test_bad_config_fails_before_work_naming_the_field_not_the_secret(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[source]\nuri = "ftp://x/y"\n[embed]\nmodel = "m"\ndim = 8\n'
                   '[qdrant]\napi_key = "very-secret-key-123"\nhnsw_m = -3\n')
    code = cli.main(["index", "--config", str(cfg)])
    err = capsys.readouterr().err
    assert code == ExitCode.CONFIG_ERROR
    assert "source.uri" in err and "embed.dim" in err and "qdrant.hnsw_m" in err
    assert "very-secret-key-123" not in err


def test_unknown_field_is_a_config_error(capsys):
    code = cli.main(["index", "--set", "source.uri=/tmp/x", "--set", "embed.model=m", "--set", "embed.dimm=64"])
    assert code == ExitCode.CONFIG_ERROR
    assert "embed.dimm" in capsys.readouterr().err


def test_usage_error_is_config_error_code():
    with pytest.raises(SystemExit) as e:
        cli.main(["index", "--no-such-flag"])
    assert e.value.code == ExitCode.CONFIG_ERROR
