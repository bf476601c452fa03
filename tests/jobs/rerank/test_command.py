"""`qbatch rerank --help` stays instant: no torch, ray or qdrant_client import, fields listed from the config."""

from __future__ import annotations

import json
import subprocess
import sys


def test_rerank_help_imports_no_heavy_modules():
    code = ("import sys, json\nfrom jobs import cli\n"
            "try:\n    cli.main(['rerank', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(json.dumps(sorted(m for m in ('torch', 'transformers', 'ray', 'qdrant_client') if m in sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
    assert "candidates.retrieve_top_k" in out.stdout and "output.redact_queries" in out.stdout


def test_iceberg_without_the_extra_is_a_config_error_naming_it(monkeypatch, tmp_path):
    import pytest
    from pydantic import ValidationError

    from qbatch.connectors import iceberg_tables
    from qbatch.jobs.rerank.config import RerankConfig

    monkeypatch.setattr(iceberg_tables, "iceberg_available", lambda: False)  # as after a plain `pip install .`
    with pytest.raises(ValidationError, match=r"qbatch\[iceberg\]"):
        RerankConfig.model_validate({"queries": {"uri": str(tmp_path)}, "reranker": {"model": "m"},
                                     "output": {"format": "iceberg", "uri": str(tmp_path)}})
    assert RerankConfig.model_validate({"queries": {"uri": str(tmp_path)}, "reranker": {"model": "m"}}).output.format \
        == "parquet"
