"""Rerank results in Iceberg (output.format = iceberg) on pyiceberg's embedded SQLite catalog, with no
server, and local files: one overwrite snapshot per run date's commit, carrying its run id; a rerun
replaces exactly its date; time travel reads the previous snapshot; an empty day is a zero-row
snapshot; kills before and after the catalog commit are completed by a rerun; the table reads the same
through a pyiceberg scan and DuckDB; a table that breaks the result contract is a config error."""

from __future__ import annotations

import datetime as dt
import json
import signal
from pathlib import Path

import pytest

from qbatch.jobs.runtime.exit_codes import ExitCode
from tests.jobs.rerank.test_job import MAX_LENGTH, jsonl, make_corpus, make_log, rerank, write_config
from tests.jobs.rerank.test_rerank_resume import run_cli

D1, D2 = dt.date(2026, 11, 27), dt.date(2026, 11, 28)


def tables(out: Path):
    from qbatch.connectors.iceberg_tables import IcebergResults

    return IcebergResults(None, str(out), None)


def report_of(out: Path, day: dt.date, run_id: str) -> dict:
    return json.loads(Path(out, "_reports", f"run_date={day.isoformat()}", "runs", run_id, "report.json").read_text())


def day_files(results, day: dt.date, snapshot_id: int | None = None) -> set[str]:
    from pyiceberg.expressions import EqualTo

    scan = results.results.scan(row_filter=EqualTo("run_date", day.isoformat()), snapshot_id=snapshot_id)
    return {task.file.file_path for task in scan.plan_files()}


@pytest.fixture(scope="module")
def ice(tmp_path_factory, stdlib_pairs, tiny_reranker_checkpoint, ray_session):
    tmp = tmp_path_factory.mktemp("rerank-iceberg")
    corpus = jsonl(tmp / "corpus.jsonl", make_corpus(stdlib_pairs, 150))
    logs = {}
    for name, seed, n in (("d1", 1, 30), ("d2", 2, 20), ("d1-rerun", 3, 25)):
        (tmp / name).mkdir()
        logs[name] = jsonl(tmp / name / "part-0.jsonl", make_log(stdlib_pairs, n, 150, seed=seed, max_candidates=5))
    out = tmp / "out"
    config = write_config(tmp / "rerank.toml", {
        "queries": {"uri": str(tmp / "d1"), "format": "jsonl"},
        "documents": {"source": "corpus", "id_column": "id", "text_column": "text"},
        "documents.corpus": {"uri": str(corpus)},
        "reranker": {"model": str(tiny_reranker_checkpoint), "max_length": MAX_LENGTH, "dtype": "float32"},
        "output": {"uri": str(out), "format": "iceberg"},
        "run": {"progress": False, "pairs_per_part": 40}})
    codes, snapshots, files = [], [], []
    for name, day, run_id in (("d1", D1, "r1"), ("d2", D2, "r2"), ("d1-rerun", D1, "r3")):
        codes.append(rerank(config, "--set", f"queries.uri={tmp / name}", "--set", f"output.run_date={day.isoformat()}",
                            "--set", f"run.run_id={run_id}"))
        results = tables(out)
        snapshots.append([s.snapshot_id for s in results.results.metadata.snapshots])
        files.append({d: day_files(results, d) for d in (D1, D2)})
    parquet = tmp / "parquet-out"  # the same first day, as Parquet: the rows the job scored
    assert rerank(config, "--set", "output.format=parquet", "--set", f"output.uri={parquet}",
                  "--set", f"output.run_date={D1.isoformat()}", "--set", "run.run_id=r1") == ExitCode.OK
    return {"tmp": tmp, "out": out, "config": config, "codes": codes, "snapshots": snapshots, "files": files,
            "parquet": parquet}


def test_each_run_adds_one_snapshot_and_a_rerun_replaces_only_its_date(ice):
    assert ice["codes"] == [ExitCode.OK] * 3
    s1, s2, s3 = ice["snapshots"]
    assert len(s1) == 1 and s2[:1] == s1 and len(s2) == 2 and s3[:2] == s2 and len(s3) == 3
    results = tables(ice["out"])
    for snapshot_id, run_id in zip(s3, ("r1", "r2", "r3")):
        summary = results.results.metadata.snapshot_by_id(snapshot_id).summary.additional_properties
        assert summary["qbatch.run-id"] == run_id
    after_d2, after_rerun = ice["files"][1], ice["files"][2]
    assert after_rerun[D2] == after_d2[D2] and after_d2[D2]  # the other date's files are untouched
    assert not after_rerun[D1] & after_d2[D1] and after_rerun[D1]  # this date's files replaced
    assert all("run_date=" not in f for day in after_rerun.values() for f in day)  # no Hive-style folders
    rerun = results.read_day(D1).to_pandas()
    assert set(rerun["run_id"]) == {"r3"} and not rerun.duplicated(["query_id", "doc_id"]).any()
    report = report_of(ice["out"], D1, "r3")
    assert report["iceberg"]["snapshot_id"] == s3[2] and report["iceberg"]["previous_snapshot_id"] == s3[1]
    assert len(rerun) == report["counts"]["rows_written"]


def test_time_travel_reads_the_day_before_the_rerun(ice):
    results = tables(ice["out"])
    before = results.read_day(D1, snapshot_id=ice["snapshots"][1][-1]).to_pandas()
    assert set(before["run_id"]) == {"r1"} and len(before) == report_of(ice["out"], D1, "r1")["counts"]["rows_written"]


def test_a_pyiceberg_scan_and_duckdb_give_the_rows_the_job_scored(ice):
    import pyarrow.compute as pc

    from qbatch.connectors.rerank_table import read_rerank_partition

    results = tables(ice["out"])
    first = results.read_day(D1, snapshot_id=ice["snapshots"][1][-1])
    scored = read_rerank_partition(str(ice["parquet"]), D1)
    cols = ["query_id", "doc_id", "new_rank", "rerank_score"]
    key = [(c, "ascending") for c in ("query_id", "doc_id")]
    assert first.select(cols).sort_by(key).equals(scored.select(cols).sort_by(key))
    con = results.results.scan(snapshot_id=ice["snapshots"][1][-1]).to_duckdb("rerank_results")
    rows = con.execute(f"select count(*), count(distinct query_id) from rerank_results "
                       f"where run_date = DATE '{D1.isoformat()}'").fetchone()
    assert rows == (scored.num_rows, len(pc.unique(scored.column("query_id"))))
    metrics = results.metrics.scan().to_arrow().to_pandas().sort_values("run_date")
    assert list(metrics["run_id"]) == ["r3", "r2"] and list(metrics["run_date"]) == [D1, D2]


def test_an_empty_day_is_a_zero_row_overwrite_snapshot(ice, tmp_path):
    blank = tmp_path / "blank"
    blank.mkdir()
    (blank / "part-0.jsonl").write_text("\n")
    day = dt.date(2026, 11, 29)
    assert rerank(ice["config"], "--set", f"queries.uri={blank}", "--set", f"output.run_date={day.isoformat()}",
                  "--set", "run.run_id=r-empty") == ExitCode.OK
    results = tables(ice["out"])
    snapshot = results.results.metadata.snapshot_by_id(report_of(ice["out"], day, "r-empty")["iceberg"]["snapshot_id"])
    assert snapshot.summary.additional_properties["qbatch.run-id"] == "r-empty"
    assert results.read_day(day).num_rows == 0 and results.read_day(D2).num_rows > 0


@pytest.mark.parametrize("point", ["before-commit", "after-commit"])
def test_a_kill_around_the_catalog_commit_is_completed_by_a_rerun(ice, tmp_path, point):
    day = dt.date(2026, 11, 30)
    flag = tmp_path / "flag"
    flag.touch()
    args = ("--set", f"queries.uri={ice['tmp'] / 'd2'}", "--set", f"output.run_date={day.isoformat()}")
    killed = run_cli(ice["config"], {"QBATCH_TEST_ICEBERG_KILL": f"{point}:{flag}"}, *args,
                     "--set", f"run.run_id=k-{point}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    results = tables(ice["out"])
    assert bool(day_files(results, day)) == (point == "after-commit")  # the table is at a whole snapshot
    rerun = run_cli(ice["config"], {}, *args, "--set", f"run.run_id=k-{point}")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    results = tables(ice["out"])
    ours = [s for s in results.results.metadata.snapshots
            if s.summary.additional_properties.get("qbatch.run-id") == f"k-{point}"]
    assert len(ours) == 1  # one commit, whichever attempt made it
    rows = results.read_day(day).to_pandas()
    assert len(rows) and not rows.duplicated(["query_id", "doc_id"]).any()
    assert len(day_files(results, day)) == report_of(ice["out"], day, f"k-{point}")["iceberg"]["data_files"]
    report = report_of(ice["out"], day, f"k-{point}")
    assert report["iceberg"]["commit_finished_by_an_earlier_attempt"] == (point == "after-commit")
    metrics = results.metrics.scan().to_arrow().to_pandas()
    assert list(metrics[metrics["run_date"] == day]["run_id"]) == [f"k-{point}"]


def test_a_table_that_breaks_the_contract_is_a_config_error_naming_the_column(ice, tmp_path, capsys):
    from pyiceberg.schema import Schema
    from pyiceberg.types import DateType, LongType, NestedField, StringType

    from qbatch.connectors.iceberg_tables import open_catalog

    out = tmp_path / "bad"
    catalog = open_catalog(None, str(out), None)
    catalog.create_namespace("qbatch")
    catalog.create_table(("qbatch", "rerank_results"), schema=Schema(
        NestedField(1, "query_id", StringType(), required=True), NestedField(2, "query", StringType(), required=True),
        NestedField(3, "doc_id", StringType(), required=True), NestedField(4, "source", StringType(), required=True),
        NestedField(5, "orig_rank", LongType()), NestedField(6, "orig_score", StringType()),
        NestedField(7, "run_date", DateType(), required=True)))
    code = rerank(ice["config"], "--set", f"output.uri={out}", "--set", f"output.run_date={D1.isoformat()}")
    err = capsys.readouterr().err
    assert code == ExitCode.CONFIG_ERROR and "orig_score" in err, err[-2000:]


def test_the_day_readers_and_the_dry_run_work_for_iceberg_and_write_nothing(ice, tmp_path, capsys):
    from qbatch.jobs.rerank.committed_day import describe_day, read_day
    from qbatch.jobs.rerank.config import RerankConfig
    from qbatch.jobs.runtime.config_loading import load_config

    cfg = load_config(RerankConfig, ice["config"])
    day = describe_day(cfg, D1)
    assert day["run_id"] == "r3" and day["rows"] == read_day(cfg, D1).num_rows > 0
    assert read_day(cfg, D1, snapshot_id=ice["snapshots"][1][-1]).column("run_id").unique().to_pylist() == ["r1"]
    before = sorted(p.name for p in (ice["out"] / "_iceberg").rglob("*"))
    assert rerank(ice["config"], "--dry-run", "--set", f"output.run_date={D1.isoformat()}") == ExitCode.OK
    out = capsys.readouterr().out
    assert '"run_id": "r3"' in out and '"format": "iceberg"' in out
    assert sorted(p.name for p in (ice["out"] / "_iceberg").rglob("*")) == before
    empty = tmp_path / "none"
    assert rerank(ice["config"], "--dry-run", "--set", f"output.uri={empty}") == ExitCode.OK and not empty.exists()


def test_the_readmes_restore_brings_one_day_back_and_leaves_the_others(ice):
    """Runs the README's restore snippet as it is written (last: it changes the module's table)."""
    import re

    from pyiceberg.expressions import EqualTo

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    snippet = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "# restore one run date" in b)
    results = tables(ice["out"])
    d2_before = results.read_day(D2).num_rows
    exec(snippet, {"EqualTo": EqualTo, "table": results.results, "run_date": D1.isoformat(),
                   "snapshot_id": ice["snapshots"][1][-1]})
    results = tables(ice["out"])
    assert set(results.read_day(D1).column("run_id").to_pylist()) == {"r1"}  # the day before its rerun
    assert results.read_day(D2).num_rows == d2_before
