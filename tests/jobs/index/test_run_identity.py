"""Run identity as the README's schedule uses it: a weekly full run and nightly incremental runs from
one config, with default run ids, all on the same day (local Ray, Qdrant local mode)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from qbatch.connectors.corpus_listing import CorpusFile
from qbatch.jobs.index.config import IndexConfig
from qbatch.jobs.index.run_identity import derived_run_id, resolve_run_id
from qbatch.jobs.runtime.exit_codes import ExitCode
from tests.jobs.index.index_fixtures import all_points, catalog_rows, index_config, qdrant_at, run_cli, write_corpus

DAY = dt.date(2026, 12, 1)


def _file(uri: str, size: int, modified_ns: int) -> CorpusFile:
    return CorpusFile(uri=uri, path=uri.rsplit("/", 1)[-1], size=size, format="jsonl", modified_ns=modified_ns)


def test_the_derived_id_names_mode_date_config_and_listing():
    files = [_file("/c/a.jsonl", 10, 1), _file("/c/b.jsonl", 20, 2)]
    base = derived_run_id("incremental", "f" * 64, files, DAY)
    assert base.startswith("incremental-20261201-") and len(base.rsplit("-", 1)[1]) == 10
    assert derived_run_id("incremental", "f" * 64, list(files), DAY) == base  # same inputs: same id
    assert derived_run_id("full", "f" * 64, files, DAY) != base
    assert derived_run_id("incremental", "e" * 64, files, DAY) != base
    assert derived_run_id("incremental", "f" * 64, [files[0], _file("/c/b.jsonl", 21, 2)], DAY) != base  # size
    assert derived_run_id("incremental", "f" * 64, [files[0], _file("/c/b.jsonl", 20, 3)], DAY) != base  # mtime
    assert derived_run_id("incremental", "f" * 64, files[:1], DAY) != base
    cfg = IndexConfig.model_validate({"source": {"uri": "/c"}, "embed": {"model": "m"},
                                      "run": {"run_id": "scheduled__2026-12-01T02:00:00+00:00"}})
    assert resolve_run_id(cfg, files, DAY) == "scheduled__2026-12-01T02-00-00-00-00"  # the scheduler's id wins


def _runs(tmp_path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "out" / "catalog" / "runs").iterdir())


def _content(tmp_path) -> dict[str, tuple[str, float]]:
    with qdrant_at(tmp_path / "qdrant") as client:
        return {p["doc_id"]: (p["content_hash"], p["price"]) for _, p in all_points(client, "catalog").values()}


def test_full_then_two_incremental_runs_on_one_day_serve_every_change(ray_session, tmp_path,
                                                                     tiny_embedding_checkpoint, capsys):
    rows = catalog_rows(40)
    src = tmp_path / "src"
    write_corpus(src, rows, n_files=2, formats=("jsonl",))
    full = index_config(tmp_path, str(src), tiny_embedding_checkpoint, run_id=None, mode="full")
    nightly = index_config(tmp_path, str(src), tiny_embedding_checkpoint, run_id=None, mode="incremental")
    assert run_cli(["index", "--config", full]) == ExitCode.OK
    first = _content(tmp_path)

    for r in rows[:10]:
        r["description"] += " Restocked in a new colour."
    write_corpus(src, rows, n_files=2, formats=("jsonl",))
    assert run_cli(["index", "--config", nightly]) == ExitCode.OK
    second = _content(tmp_path)
    assert {d for d in second if second[d][0] != first[d][0]} == {r["id"] for r in rows[:10]}

    for r in rows[20:25]:
        r["price"] += 1
    write_corpus(src, rows, n_files=2, formats=("jsonl",))
    assert run_cli(["index", "--config", nightly]) == ExitCode.OK
    third = _content(tmp_path)
    assert {d for d in third if third[d][1] != second[d][1]} == {r["id"] for r in rows[20:25]}
    runs = _runs(tmp_path)
    assert len(runs) == 3 and sum(r.startswith("incremental-") for r in runs) == 2

    capsys.readouterr()
    assert run_cli(["index", "--config", nightly]) == ExitCode.OK  # unchanged inputs: the same run, a no-op
    assert "already finished" in capsys.readouterr().out
    assert _runs(tmp_path) == runs and _content(tmp_path) == third


def test_a_finished_run_id_reused_with_another_mode_or_config_is_an_error(ray_session, tmp_path,
                                                                         tiny_embedding_checkpoint, capsys):
    write_corpus(tmp_path / "src", catalog_rows(12), n_files=1)
    cfg = index_config(tmp_path, str(tmp_path / "src"), tiny_embedding_checkpoint, run_id="nightly-1")
    assert run_cli(["index", "--config", cfg]) == ExitCode.OK
    capsys.readouterr()
    assert run_cli(["index", "--config", cfg, "--set", "run.mode=incremental"]) == ExitCode.CONFIG_ERROR
    err = capsys.readouterr().err
    assert "nightly-1" in err and "'full'" in err and "'incremental'" in err
    assert run_cli(["index", "--config", cfg, "--set", "embed.batch_size=8"]) == ExitCode.CONFIG_ERROR
    assert "already finished with config" in capsys.readouterr().err
    state = json.loads((tmp_path / "out" / "catalog" / "runs" / "nightly-1" / "state.json").read_text())
    assert state["attempts"] == 1 and state["phase"] == "cleaned"
