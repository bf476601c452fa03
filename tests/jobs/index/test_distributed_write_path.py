"""The distributed write path end to end, on real Ray and local-mode Qdrant: vectors go from the embed
pool to a writer actor, the driver gets acknowledgement rows only, checkpoint units finish in any
order, and duplicates are decided before embedding. Faults are injected through labelled test-only
switches (QBATCH_TEST_*)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from qbatch.connectors.point_ids import point_id
from tests.jobs.index.index_fixtures import (REPO, all_points, catalog_rows, index_config, qdrant_at, read_report,
                                             run_cli, run_cli_subprocess, run_dir, start_index_run, wait_for,
                                             write_corpus)


def _exact(tmp_path: Path, rows: list[dict], run_id: str = "r1") -> dict:
    """The run's report, after checking that every row landed exactly once."""
    report = read_report(tmp_path, run_id)
    assert report["counts"]["read"] == len(rows) == report["counts"]["docs_upserted"]
    assert report["counts"]["points_upserted"] == len(rows)
    with qdrant_at(tmp_path / "qdrant") as client:
        points = all_points(client, "catalog")
    doc_ids = [payload["doc_id"] for _, payload in points.values()]
    assert len(doc_ids) == len(set(doc_ids)) == len(rows)
    assert set(points) == {point_id(r["id"], 0) for r in rows}
    return report


def test_files_that_finish_out_of_order_are_each_checkpointed_once(tmp_path, tiny_embedding_checkpoint):
    """The first file's batch is slowed on one of two embed actors, so later files overtake it; counts
    stay exact."""
    rows = catalog_rows(120)
    write_corpus(tmp_path / "src", rows, n_files=4, formats=("jsonl",))
    cfg_path = index_config(tmp_path, str(tmp_path / "src"), tiny_embedding_checkpoint)
    cfg_path.write_text(cfg_path.read_text().replace(
        "batch_size = 64", "batch_size = 30\nconcurrency = 2\nnum_cpus = 0.5"))  # one batch per file
    done = run_cli_subprocess(["index", "--config", cfg_path], env={"QBATCH_TEST_SLOW_FILE": "part-000:4.0"})
    assert done.returncode == 0, done.stderr[-3000:]
    report = _exact(tmp_path, rows)
    markers = sorted((run_dir(tmp_path, "r1") / "files").glob("*.done.json"), key=lambda p: p.stat().st_mtime_ns)
    assert len(markers) == 4  # one unit per file, each marked once
    finished = [Path(json.loads(m.read_text())["file"]).name for m in markers]
    assert finished[0] != "part-000.jsonl", finished  # listed first, overtaken
    assert report["resume"]["units_in_flight_at_crash"] == 0


def test_the_driver_gets_small_acks_from_a_writer_in_another_process(ray_session, tmp_path, monkeypatch,
                                                                      tiny_embedding_checkpoint):
    """Long texts, yet the driver sees no vector, text or payload column and under 256 bytes per document."""
    from qbatch.jobs.index import ack_book

    rows = [dict(r, description=r["description"] * 40) for r in catalog_rows(60)]
    write_corpus(tmp_path / "src", rows, n_files=2)
    seen_columns = set()
    real_consume = ack_book.AckBook.consume

    def recording_consume(self, batch):
        seen_columns.update(batch.column_names)
        return real_consume(self, batch)

    monkeypatch.setattr(ack_book.AckBook, "consume", recording_consume)
    cfg = index_config(tmp_path, str(tmp_path / "src"), tiny_embedding_checkpoint)
    assert run_cli(["index", "--config", cfg]) == 0
    report = _exact(tmp_path, rows)
    assert seen_columns and not seen_columns & {"vector", "text", "token_ids", "payload_json", "span_start"}
    writer = report["writer"]
    assert writer["actors"] == 1 and writer["driver_pid"] == os.getpid() not in writer["pids"]
    assert 0 < writer["ack_bytes_per_doc"] < 256
    assert writer["points_written"] == 60 and writer["requests"] >= 1
    assert writer["undo_reads"] == 0  # a new collection has nothing to undo
    stages = report["stages_seconds"]
    assert stages["qdrant write (sum over writer actors)"] > 0 and stages["embed (sum over actors)"] > 0


def test_a_writer_killed_after_acknowledged_upserts_still_gives_exact_counts(tmp_path, tiny_embedding_checkpoint):
    """FAULT INJECTION: the writer process dies once, after 30 points were acknowledged and before it
    acked its batch; Ray restarts it and the batch is written again under the same ids."""
    rows = catalog_rows(120)
    write_corpus(tmp_path / "src", rows, n_files=2)
    cfg = index_config(tmp_path, str(tmp_path / "src"), tiny_embedding_checkpoint)
    cfg.write_text(cfg.read_text().replace("batch_size = 64", "batch_size = 20").replace(
        "upsert_batch_size = 128", "upsert_batch_size = 16"))
    flag = tmp_path / "kill-writer-once"
    flag.write_text("")
    done = run_cli_subprocess(["index", "--config", cfg], env={"QBATCH_TEST_WRITER_KILL_AFTER": f"30:{flag}"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert not flag.exists()  # the fault fired, which it does only once 30 points were acknowledged
    report = _exact(tmp_path, rows)
    # The dead writer's unacknowledged batch was written again by its replacement and counted once.
    assert report["writer"]["points_written"] == 120


def test_the_driver_checkpoints_each_unit_without_waiting_for_later_batches(tmp_path, tiny_embedding_checkpoint):
    """TEST SWITCH: before each batch the writer waits until every unit it passed on earlier is
    checkpointed. A driver that held acknowledgements back until later batches arrived (as Ray Data's
    prefetching did) would leave those units in flight, and after a crash redo them; here it would
    stall the writer until its 20 s wait gave up, which the log records."""
    rows = catalog_rows(90)
    write_corpus(tmp_path / "src", rows, n_files=6)
    cfg = index_config(tmp_path, str(tmp_path / "src"), tiny_embedding_checkpoint)
    cfg.write_text(cfg.read_text().replace("batch_size = 64", "batch_size = 15"))  # a file per embed call
    files = run_dir(tmp_path, "r1") / "files"
    done = run_cli_subprocess(["index", "--config", cfg], env={"QBATCH_TEST_WRITER_AWAIT_CHECKPOINTS": str(files)})
    assert done.returncode == 0, done.stderr[-3000:]
    _exact(tmp_path, rows)
    waits = [json.loads(line) for line in (files.parent / "writer-checkpoint-waits.jsonl").read_text().splitlines()]
    assert max(w["expected"] for w in waits) >= 4  # the writer passed on most units before its last batch
    assert all(w["done"] >= w["expected"] for w in waits), waits


def test_transient_writer_failures_are_retried_and_reported(tmp_path, tiny_embedding_checkpoint):
    """FAULT INJECTION: 20% of the writer's upserts fail before reaching Qdrant."""
    rows = catalog_rows(80)
    write_corpus(tmp_path / "src", rows, n_files=2)
    cfg = index_config(tmp_path, str(tmp_path / "src"), tiny_embedding_checkpoint)
    cfg.write_text(cfg.read_text().replace("upsert_batch_size = 128", "upsert_batch_size = 4"))
    done = run_cli_subprocess(["index", "--config", cfg], env={"QBATCH_TEST_WRITER_FAIL_RATIO": "0.2"})
    assert done.returncode == 0, done.stderr[-3000:]
    report = _exact(tmp_path, rows)
    assert report["writer"]["retries"] > 0
    assert report["writer"]["requests"] - report["writer"]["retries"] >= 20  # 80 points, at most 4 per request


def test_sigkill_mid_file_redoes_at_most_the_units_in_flight(tmp_path, tiny_embedding_checkpoint):
    """One Parquet file of 8 row groups of 50 rows, checkpointed every 50 rows: a rerun after a SIGKILL
    skips the row groups already checkpointed, redoes only what was in flight, and embeds what the first
    attempt planned though a file was added meanwhile."""
    rows = catalog_rows(400)
    (tmp_path / "src").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "src" / "catalog.parquet", row_group_size=50)
    cfg = index_config(tmp_path, str(tmp_path / "src"), tiny_embedding_checkpoint,
                       extra="checkpoint_rows = 50\nblock_bytes = 8192")  # blocks of a few dozen rows
    cfg.write_text(cfg.read_text().replace("batch_size = 64", "batch_size = 10"))
    files = run_dir(tmp_path, "r1") / "files"

    def done_and_in_flight():
        done = {p.name[:-len(".done.json")] for p in files.glob("*.done.json")} if files.exists() else set()
        started = {p.name[:-len(".started")] for p in files.glob("*.started")} if files.exists() else set()
        return done, started - done

    proc = start_index_run(cfg, "r1", {"QBATCH_TEST_EMBED_DELAY_S": "0.3"})
    try:
        wait_for(lambda: len(done_and_in_flight()[0]) >= 2 and done_and_in_flight()[1], 400, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done, in_flight = done_and_in_flight()
    assert 2 <= len(done) < 8 and in_flight
    # A file that lands after the first attempt planned is left for the next run: the rerun runs the plan.
    write_corpus(tmp_path / "late", [dict(r, id=f"late{i}") for i, r in enumerate(catalog_rows(7))], n_files=1)
    (tmp_path / "late" / "part-000.parquet").rename(tmp_path / "src" / "late.parquet")
    rerun = subprocess.run([sys.executable, "-m", "qbatch.jobs.cli", "index", "--config", str(cfg)], cwd=REPO,
                           env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    report = _exact(tmp_path, rows)
    assert report["plan"] == {"reused": True, "files": 1, "duplicates": 0}
    resume = report["resume"]
    print("resume figures:", resume)  # quoted in the closing note (pytest -s)
    assert resume["units_done_by_earlier_attempts"] == len(done)
    assert resume["units_in_flight_at_crash"] == len(in_flight)
    assert resume["docs_this_attempt"] == 400 - 50 * len(done)  # the checkpointed row groups were skipped
    assert 0 < resume["docs_redone"] <= 50 * len(in_flight)


def test_the_same_duplicate_wins_whatever_the_pool_sizes(ray_session, tmp_path, tiny_embedding_checkpoint):
    """Ids repeated within a file and across files: the first in (file, line) order wins, with two or
    eight scan tasks at once and one or two embed actors in the load pass."""
    import dataclasses

    from qbatch.jobs.index.config import IndexConfig
    from qbatch.jobs.index.corpus_scan import first_occurrences, scan_corpus
    from qbatch.jobs.index.job import collection_spec
    from qbatch.jobs.runtime.actor_pool import plan_pools
    from qbatch.jobs.runtime.config_loading import load_config
    from qbatch.pipeline.embedding_tokenizer import EmbeddingTokenizer

    rows = catalog_rows(60)
    repeats = [dict(r, title=f"second copy of {r['id']}") for r in rows[:10]] + [dict(rows[20], title="again")]
    paths = write_corpus(tmp_path / "src", rows[:30] + repeats[5:] + rows[30:] + repeats[:5], n_files=3,
                         formats=("jsonl",))
    assert len(paths) == 3
    cfg_path = index_config(tmp_path, str(tmp_path / "src"), tiny_embedding_checkpoint)
    cfg = load_config(IndexConfig, cfg_path)

    from qbatch.connectors.corpus_listing import list_corpus_files

    files = list_corpus_files(cfg.source)
    spec = collection_spec(cfg, EmbeddingTokenizer.from_pretrained(cfg.embed.model, max_length=cfg.embed.max_length))
    base = plan_pools("embed", cfg.embed, {"CPU": 2.0}, cpu_stages=True, writers=1)
    losers = []
    for share in (1.0, 0.25):  # two or eight scan tasks at once
        scan = scan_corpus(cfg, files, spec, dataclasses.replace(base, scan_num_cpus=share), 8)
        try:
            lost = pa.concat_tables([first_occurrences(scan.spill.read(i))[1] for i in range(8)])
        finally:
            scan.close()
        losers.append(sorted(zip(lost["doc_id"].to_pylist(), lost["file_order"].to_pylist(),
                                 lost["line"].to_pylist())))
    assert losers[0] == losers[1] and len(losers[0]) == 11

    titles = []
    for embed_actors, alias in ((1, "one"), (2, "two")):
        cfg_path = index_config(tmp_path, str(tmp_path / "src"), tiny_embedding_checkpoint, alias=alias,
                                extra="max_reject_ratio = 0.5")  # 11 of 71 rows repeat an id
        cfg_path.write_text(cfg_path.read_text().replace(
            "batch_size = 64", f"batch_size = 8\nconcurrency = {embed_actors}\nnum_cpus = 0.5"))
        assert run_cli(["index", "--config", cfg_path]) == 0
        report = read_report(tmp_path, "r1", alias)
        assert report["counts"]["rejected"] == {"duplicate_id": 11} and report["counts"]["docs_upserted"] == 60
        with qdrant_at(tmp_path / "qdrant") as client:
            titles.append({p["doc_id"]: p["text"].split("\n")[0] for _, p in all_points(client, alias).values()})
    assert titles[0] == titles[1] == {r["id"]: r["title"] for r in rows}
