"""A rerank run killed with SIGKILL and rerun with the same run id: during scoring it redoes at most the
units that were in flight (its prepare phase is not redone), during the commit it finishes the commit;
either way the day has exact rows and no duplicates. A rerun whose log or config changed meanwhile is
refused with an error naming what changed. Each killed run is a subprocess with its own local Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from qbatch.connectors.rerank_table import read_rerank_partition, read_success
from qbatch.jobs.runtime.exit_codes import ExitCode
from tests.jobs.rerank.test_job import DAY, MAX_LENGTH, jsonl, make_corpus, make_log, rerank, write_config

REPO = Path(__file__).resolve().parents[3]
STAGING = Path("_staging", f"run_date={DAY.isoformat()}", "20261127")


def run_cli(config: Path, env: dict, *extra: str) -> subprocess.CompletedProcess:
    """`qbatch rerank` in a subprocess in its own process group; whatever it leaves running is killed."""
    proc = subprocess.Popen([sys.executable, "-m", "qbatch.jobs.cli", "rerank", "--config", str(config),
                             "--log-level", "WARNING", *extra], cwd=REPO, start_new_session=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=420)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its local Ray, if the driver was killed
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, stdlib_pairs, tiny_reranker_checkpoint, ray_session):
    tmp = tmp_path_factory.mktemp("rerank-resume")
    corpus = jsonl(tmp / "corpus.jsonl", make_corpus(stdlib_pairs, 200))
    (tmp / "log").mkdir()
    jsonl(tmp / "log" / "part-0.jsonl", make_log(stdlib_pairs, 80, 200, seed=9, max_candidates=8))
    config = write_config(tmp / "rerank.toml", {
        "queries": {"uri": str(tmp / "log"), "format": "jsonl"},
        "documents": {"source": "corpus", "id_column": "id", "text_column": "text"},
        "documents.corpus": {"uri": str(corpus)},
        "reranker": {"model": str(tiny_reranker_checkpoint), "max_length": MAX_LENGTH, "dtype": "float32",
                     "torch_threads": 1},
        "output": {"run_date": DAY.isoformat()},
        "run": {"progress": False, "pairs_per_part": 24, "prepare_partitions": 2}})
    reference = tmp / "reference"
    assert rerank(config, "--set", f"output.uri={reference}") == ExitCode.OK
    table = read_rerank_partition(str(reference), DAY).to_pandas().sort_values(["query_id", "new_rank"])
    return {"tmp": tmp, "config": config, "reference": table.reset_index(drop=True)}


def same_day(out: Path, reference) -> None:
    table = read_rerank_partition(str(out), DAY).to_pandas()
    assert not table.duplicated(["query_id", "doc_id"]).any()
    assert table.sort_values(["query_id", "new_rank"]).reset_index(drop=True).equals(reference)


def report_of(out: Path) -> dict:
    return json.loads(next(Path(out, "_reports").rglob("report.json")).read_text())


def test_a_run_killed_while_scoring_redoes_at_most_its_in_flight_units(setup, tmp_path):
    out, flag = tmp_path / "out", tmp_path / "kill-flag"
    flag.touch()
    killed = run_cli(setup["config"], {"QBATCH_TEST_RERANK_KILL_AFTER_UNITS": f"2:{flag}"}, "--set", f"output.uri={out}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    done = list((out / STAGING / "units").glob("*.json"))
    prepared = json.loads((out / STAGING / "prepare" / "PREPARED.json").read_text())
    assert len(done) >= 2 and len(done) < len(prepared["units"]) and read_success(str(out), DAY) is None
    rerun = run_cli(setup["config"], {}, "--set", f"output.uri={out}")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    same_day(out, setup["reference"])
    report = report_of(out)
    resume = report["resume"]
    assert report["plan"]["prepare_skipped"] and resume["units_total"] == len(prepared["units"])
    assert resume["units_skipped_done"] == len(done)
    assert resume["units_redone"] == resume["units_in_flight_at_crash"] <= 1  # one actor: one unit in flight
    assert not (out / STAGING).exists()  # the prepared parts (raw queries) are gone after the commit


def test_a_run_killed_inside_the_commit_is_finished_by_the_rerun(setup, tmp_path):
    out, flag = tmp_path / "out", tmp_path / "kill-flag"
    flag.touch()
    killed = run_cli(setup["config"], {"QBATCH_TEST_RERANK_KILL_IN_COMMIT": str(flag)}, "--set", f"output.uri={out}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert read_success(str(out), DAY) is None and list((out / STAGING / "publish").glob("part-*.parquet"))
    rerun = run_cli(setup["config"], {}, "--set", f"output.uri={out}")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    same_day(out, setup["reference"])
    resume = report_of(out)["resume"]
    assert resume["units_skipped_done"] == resume["units_total"] and resume["units_redone"] == 0


def test_a_rerun_whose_log_or_config_changed_names_what_changed(setup, tmp_path):
    out, flag = tmp_path / "out", tmp_path / "kill-flag"
    flag.touch()
    killed = run_cli(setup["config"], {"QBATCH_TEST_RERANK_KILL_AFTER_UNITS": f"1:{flag}"}, "--set", f"output.uri={out}")
    assert killed.returncode == -signal.SIGKILL
    changed = run_cli(setup["config"], {}, "--set", f"output.uri={out}", "--set", "reranker.max_length=200")
    assert changed.returncode == ExitCode.CONFIG_ERROR and "reranker.max_length" in changed.stderr
    log = setup["tmp"] / "log-changed"
    log.mkdir()
    (log / "part-0.jsonl").write_text((setup["tmp"] / "log" / "part-0.jsonl").read_text() + "\n")
    moved = run_cli(setup["config"], {}, "--set", f"output.uri={out}", "--set", f"queries.uri={log}")
    assert moved.returncode == ExitCode.CONFIG_ERROR and "queries.uri" in moved.stderr
    (log / "part-0.jsonl").write_text((setup["tmp"] / "log" / "part-0.jsonl").read_text())
    # Given up: the day is run under another run id. The killed run's staging (raw queries) goes.
    fresh = run_cli(setup["config"], {}, "--set", f"output.uri={out}", "--set", "run.run_id=fresh")
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert not (out / STAGING).exists() and not (out / "_staging" / f"run_date={DAY.isoformat()}" / "fresh").exists()
    report = json.loads((out / "_reports" / f"run_date={DAY.isoformat()}" / "runs" / "fresh" / "report.json").read_text())
    assert report["abandoned_runs_removed"] == ["20261127"]
    same_day(out, setup["reference"].assign(run_id="fresh"))
