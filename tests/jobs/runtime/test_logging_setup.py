"""What a run tells people and machines: JSON log lines tagged with the run id and free of secrets, and a
dry run that prints its plan and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from qbatch.jobs.runtime.exit_codes import ExitCode
from tests.jobs.index.index_fixtures import catalog_rows, index_config, qdrant_at, run_cli, run_cli_subprocess, write_corpus

FAKE_KEY = "qk-fake-1234567890"


def _text_of(path: Path) -> str:
    if path.suffix == ".parquet":  # compressed: read the values, not the bytes
        return str(pq.read_table(path).to_pylist())
    return path.read_bytes().decode("utf-8", errors="replace")


def test_json_logs_carry_the_run_id_and_never_the_api_key(tmp_path, tiny_embedding_checkpoint):
    paths = write_corpus(tmp_path / "src", catalog_rows(8), n_files=2)
    with paths[1].open("a") as f:
        f.write('{"id": "b1", "title": "broken\n')  # one dead letter, so that table exists too
    cfg = index_config(tmp_path, str(tmp_path / "src"), tiny_embedding_checkpoint, extra="max_reject_ratio = 0.5")
    # Local mode ignores the key, but the job still holds it (config and environment) and must not leak it.
    cfg.write_text(cfg.read_text().replace("[qdrant]\n", f'[qdrant]\napi_key = "{FAKE_KEY}"\n'))
    out = run_cli_subprocess(["index", "--config", cfg, "--log-format", "json"], env={"QDRANT_API_KEY": FAKE_KEY})
    assert out.returncode == ExitCode.OK, out.stderr[-3000:]

    docs = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
    assert len(docs) >= 3  # qdrant reachable, source listed, report written at least
    for doc in docs:
        assert {"ts", "level", "logger", "run_id", "msg"} <= set(doc), doc
        assert doc["run_id"] == "r1" and doc["logger"].startswith("qbatch") and doc["msg"], doc
    assert any("report written" in d["msg"] for d in docs)

    written = [p for p in sorted((tmp_path / "out").rglob("*")) if p.is_file()]
    assert any("dead_letter" in str(p) for p in written) and any(p.name == "report.json" for p in written)
    for where, text in [("stdout", out.stdout), ("stderr", out.stderr), *((str(p), _text_of(p)) for p in written)]:
        assert FAKE_KEY not in text, where


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, tiny_embedding_checkpoint, capsys):
    write_corpus(tmp_path / "src", catalog_rows(8), n_files=1)
    cfg = index_config(tmp_path, str(tmp_path / "src"), tiny_embedding_checkpoint)
    assert run_cli(["index", "--config", cfg, "--dry-run"]) == ExitCode.OK
    plan = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines()[1:])
    assert plan["files"] == "1" and int(plan["bytes"]) == (tmp_path / "src" / "part-000.parquet").stat().st_size
    assert int(plan["est_tokens"]) > 0 and plan["guard"] == "passes" and plan["sink"] == "reachable"
    with qdrant_at(tmp_path / "qdrant") as client:
        assert client.get_collections().collections == [] and client.get_aliases().aliases == []
    assert not (tmp_path / "out").exists()
