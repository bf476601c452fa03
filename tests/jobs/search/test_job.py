"""`qbatch search` against an index built by `qbatch index`: local Ray, Qdrant local mode, the tiny
Qwen3 checkpoint."""

from __future__ import annotations

import json

from qbatch.jobs.runtime.exit_codes import ExitCode
from tests.jobs.index.index_fixtures import catalog_rows, index_config, run_cli, run_cli_subprocess


def test_search_command_prints_the_top_hits(ray_session, tmp_path, tiny_embedding_checkpoint, capsys):
    src = tmp_path / "src"
    src.mkdir()
    rows = catalog_rows(30)
    (src / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = index_config(tmp_path, str(src), tiny_embedding_checkpoint)
    assert run_cli(["index", "--config", cfg]) == ExitCode.OK
    capsys.readouterr()
    assert run_cli(["search", rows[3]["title"], "--config", cfg, "--k", "3", "--filter", "lang=" + rows[3]["lang"]]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and lines[0].split()[:2] == ["#", "score"]
    assert all(any(r["id"] == line.split()[2] and r["lang"] == rows[3]["lang"] for r in rows) for line in lines[1:])


def test_search_prints_hits_without_loading_bars(ray_session, tmp_path, tiny_embedding_checkpoint):
    """`qbatch search` loads the model per query: transformers' "Loading weights" bar must not follow it."""
    src = tmp_path / "src"
    src.mkdir()
    rows = catalog_rows(12)
    (src / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = index_config(tmp_path, str(src), tiny_embedding_checkpoint)
    assert run_cli(["index", "--config", cfg]) == ExitCode.OK
    out = run_cli_subprocess(["search", rows[5]["title"], "--config", cfg, "--k", "2"])
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines()[0].split()[:2] == ["#", "score"] and len(out.stdout.splitlines()) == 3
    assert "Loading weights" not in out.stderr and "it/s" not in out.stderr, out.stderr[-3000:]
