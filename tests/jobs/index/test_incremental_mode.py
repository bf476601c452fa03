"""In-place runs never leave a damaged live index: what can be gated before writing is gated then, and
a refusal after writing, a crash followed by `qbatch index rollback`, or a crash followed by a resume
whose gate fails all put the live collection back point for point (local Ray, Qdrant local mode,
real MiniLM weights for the golden queries, the tiny Qwen3 checkpoint elsewhere)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

from qbatch.jobs.runtime.exit_codes import ExitCode
from tests.jobs.index.index_fixtures import (REPO, all_points, catalog_rows, index_config, kill_after_writes,
                                             qdrant_at, read_report, run_cli, run_dir, start_index_run, write_corpus)

SAMPLE = REPO / "examples"


def _assert_same_points(before: dict, after: dict) -> None:
    """Equal payloads, and vectors within 1e-6 (Qdrant renormalises cosine vectors on upsert)."""
    assert set(after) == set(before)
    for pid, (vector, payload) in before.items():
        np.testing.assert_allclose(after[pid][0], vector, atol=1e-6)
        assert after[pid][1] == payload, pid


def _points(tmp_path) -> dict:
    with qdrant_at(tmp_path / "qdrant") as client:
        return all_points(client, "catalog")


class RecordingClient:
    """CALL RECORDER, not a fake: forwards every call to the real local-mode client and records the ones
    that change points, so a test can prove that a refused run sent no write at all."""

    WRITES = ("upsert", "delete", "set_payload", "overwrite_payload", "batch_update_points", "delete_payload")

    def __init__(self, real, calls: list):
        self._real, self.calls = real, calls

    def __getattr__(self, name):
        attr = getattr(self._real, name)
        if name not in self.WRITES:
            return attr

        def record(*args, **kwargs):
            self.calls.append(name)
            return attr(*args, **kwargs)
        return record


def test_golden_gates_refuse_before_writing_and_restore_after_writing(ray_session, tmp_path, minilm_checkpoint,
                                                                     monkeypatch):
    import qbatch.connectors.qdrant_connection as qc

    rows = [json.loads(line) for line in (SAMPLE / "sample_catalog.jsonl").read_text().splitlines()]
    golden = [json.loads(line) for line in (SAMPLE / "golden_queries.jsonl").read_text().splitlines()]
    expected = sorted({d for g in golden for d in g["expected_doc_ids"]})
    write_corpus(tmp_path / "v1", rows, n_files=2, formats=("jsonl",))
    extra = (f'[gates]\ngolden_queries = "{SAMPLE / "golden_queries.jsonl"}"\ngolden_min_recall = 0.0\n'
             'golden_max_drop = 0.05\nmax_delete_ratio = 0.5\nmin_ratio = 0.5\n[chunking]\nenabled = true\nmax_tokens = 48\n'
             'overlap = 8\n')
    cfg = index_config(tmp_path, str(tmp_path / "v1"), minilm_checkpoint, extra=extra)
    assert run_cli(["index", "--config", cfg]) == ExitCode.OK
    before = _points(tmp_path)

    calls: list[str] = []
    real_connect = qc.connect
    monkeypatch.setattr(qc, "connect", lambda c: RecordingClient(real_connect(c), calls))
    # 1. The run would delete the documents the golden queries expect: refused before any write.
    v2 = [r for r in rows if r["id"] not in expected]
    write_corpus(tmp_path / "v2", v2, n_files=2, formats=("jsonl",))
    assert run_cli(["index", "--config", cfg, "--set", f"source.uri='{tmp_path / 'v2'}'", "--set",
                    "run.mode=incremental", "--set", "run.run_id=deletes-golden"]) == ExitCode.GATE_FAILED
    assert calls == []  # not one write reached Qdrant
    report = read_report(tmp_path, "deletes-golden")
    assert "refused before writing anything" in report["exit"]["reason"]
    assert [g["gate"] for g in report["gates"]] == ["golden_recall_after_deletions"]
    monkeypatch.setattr(qc, "connect", real_connect)
    _assert_same_points(before, _points(tmp_path))

    # 2. The damage shows only after writing: the golden documents' text changes. Restored point for point,
    #    with changed, payload-only, deleted and newly chunked documents in the same run.
    chunks = {}
    for _, payload in before.values():
        chunks[payload["doc_id"]] = chunks.get(payload["doc_id"], 0) + 1
    v3, grown = [], None
    for r in rows:
        r = dict(r)
        if r["id"] in expected:
            r["title"], r["description"] = "Lorem ipsum", "dolor sit amet"  # changed
        elif r["id"] in ("p0100", "p0101"):
            r["price"] = r["price"] + 1  # payload only
        elif r["id"] in ("p0110", "p0111", "p0112"):
            continue  # deleted
        elif grown is None and chunks[r["id"]] == 1:
            r["description"] = " ".join([r["description"]] * 6)  # newly chunked
            grown = r["id"]
        v3.append(r)
    v3.append(dict(rows[5], id="p9001"))  # new
    write_corpus(tmp_path / "v3", v3, n_files=2, formats=("jsonl",))
    assert run_cli(["index", "--config", cfg, "--set", f"source.uri='{tmp_path / 'v3'}'", "--set",
                    "run.mode=incremental", "--set", "run.run_id=breaks-golden"]) == ExitCode.GATE_FAILED
    report = read_report(tmp_path, "breaks-golden")
    gate = next(g for g in report["gates"] if g["gate"] == "golden_recall")
    assert not gate["passed"]
    assert report["diff"]["changed"] >= len(expected) + 1 and report["diff"]["payload_only"] == 2
    assert report["diff"]["deleted"] == 3 and report["diff"]["new_docs"] == 1
    assert report["undo"]["restored_points"] > 0 and report["undo"]["removed_points"] >= 1 + 1  # new doc, new chunks
    # The writer actors read before-images for the undo log; those reads are counted apart from writes.
    assert report["writer"]["undo_reads"] >= 1 and report["writer"]["requests"] >= 1
    _assert_same_points(before, _points(tmp_path))
    state = json.loads((run_dir(tmp_path, "breaks-golden") / "state.json").read_text())
    assert state["details"]["rolled_back"]
    assert run_cli(["index", "--config", cfg, "--set", f"source.uri='{tmp_path / 'v3'}'", "--set",
                    "run.mode=incremental", "--set", "run.run_id=breaks-golden"]) == ExitCode.CONFIG_ERROR


def _carrying(tmp_path, run_id: str) -> int:
    return sum(p["run_id"] == run_id for _, p in _points(tmp_path).values())


def test_a_crash_mid_write_is_undone_by_rollback_or_by_a_resume_whose_gate_fails(tmp_path,
                                                                                tiny_embedding_checkpoint):
    rows = catalog_rows(60)
    write_corpus(tmp_path / "v1", rows, n_files=6, formats=("jsonl",))
    build = index_config(tmp_path, str(tmp_path / "v1"), tiny_embedding_checkpoint, run_id="build")
    assert run_cli(["index", "--config", build]) == ExitCode.OK
    before = _points(tmp_path)
    v2 = [dict(r, description=r["description"] + " New season.") for r in rows[:50]]
    v2[0]["price"] += 1
    write_corpus(tmp_path / "v2", v2, n_files=6, formats=("jsonl",))  # 50 changed, 10 deleted
    slow = {"QBATCH_TEST_EMBED_DELAY_S": "1.0"}
    small_batches = ["--set", f"source.uri='{tmp_path / 'v2'}'", "--set", "run.mode=incremental",
                     "--set", "embed.batch_size=4", "--set", "gates.max_delete_ratio=0.5", "--set", "gates.min_ratio=0.5"]

    # A crash in the middle of the writes, then `qbatch index rollback`.
    proc = start_index_run(build, "crashed", slow, *small_batches)
    kill_after_writes(proc, run_dir(tmp_path, "crashed") / "files")
    assert _carrying(tmp_path, "crashed") > 0  # the kill landed after the live collection changed
    assert run_cli(["index", "rollback", "--config", build]) == ExitCode.OK
    _assert_same_points(before, _points(tmp_path))
    resumed = subprocess.run([sys.executable, "-m", "qbatch.jobs.cli", "index", "--config", str(build), "--set",
                              "run.run_id=crashed", *small_batches], cwd=REPO, capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)
    assert resumed.returncode == ExitCode.CONFIG_ERROR and "rolled back" in resumed.stderr

    # A crash, then a resume whose post-write gate fails: restored from the first attempt's before-images.
    # No deletions this time, so no golden gate can refuse before writing.
    write_corpus(tmp_path / "v3", [dict(r, description=r["description"] + " Sale.") for r in rows], n_files=6,
                 formats=("jsonl",))
    golden = tmp_path / "golden.jsonl"
    golden.write_text(json.dumps({"query": rows[1]["title"], "expected_doc_ids": [r["id"] for r in rows[:20]]}) + "\n")
    gated = [*small_batches, "--set", f"source.uri='{tmp_path / 'v3'}'", "--set", f"gates.golden_queries='{golden}'",
             "--set", "gates.golden_min_recall=0.9"]
    proc = start_index_run(build, "resumed", slow, *gated)  # recall@10 of 20 expected documents is at most 0.5
    kill_after_writes(proc, run_dir(tmp_path, "resumed") / "files")
    assert _carrying(tmp_path, "resumed") > 0
    again = subprocess.run([sys.executable, "-m", "qbatch.jobs.cli", "index", "--config", str(build), "--set",
                            "run.run_id=resumed", *gated], cwd=REPO, capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)
    assert again.returncode == ExitCode.GATE_FAILED, again.stderr[-3000:]
    report = read_report(tmp_path, "resumed")
    assert report["resume"]["attempt"] == 2 and report["undo"]["restored_points"] > 0
    _assert_same_points(before, _points(tmp_path))


def test_the_lock_heartbeat_outlives_a_slow_scan(tmp_path, tiny_embedding_checkpoint):
    rows = catalog_rows(40)
    write_corpus(tmp_path / "src", rows, n_files=8, formats=("jsonl",))
    cfg = index_config(tmp_path, str(tmp_path / "src"), tiny_embedding_checkpoint, run_id="build")
    assert run_cli(["index", "--config", cfg]) == ExitCode.OK
    first = start_index_run(cfg, "slow-scan", {"QBATCH_TEST_SCAN_DELAY_S": "1.5"}, "--set",
                            "run.mode=incremental", "--set", "run.lock_ttl_s=3")
    try:
        lock = tmp_path / "out" / "catalog" / "LOCK"
        deadline = time.monotonic() + 300
        while not lock.exists():
            assert first.poll() is None and time.monotonic() < deadline, "the first run never took the lock"
            time.sleep(0.2)
        time.sleep(6)  # twice the TTL: without the heartbeat the lock would have expired by now
        assert first.poll() is None, "the scan finished too soon to test the heartbeat"
        second = subprocess.run([sys.executable, "-m", "qbatch.jobs.cli", "index", "--config", str(cfg), "--set",
                                 "run.run_id=competitor", "--set", f"qdrant.path='{tmp_path / 'other-qdrant'}'",
                                 "--set", "run.lock_ttl_s=3"], cwd=REPO, capture_output=True, text=True,
                                env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
        assert second.returncode == ExitCode.LOCKED, second.stderr[-2000:]
        assert first.wait(timeout=600) == ExitCode.OK, first.stderr.read()[-3000:]
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)


def test_in_place_runs_apply_changeable_settings_and_refuse_fixed_ones(ray_session, tmp_path,
                                                                       tiny_embedding_checkpoint, capsys):
    write_corpus(tmp_path / "src", catalog_rows(12), n_files=1)
    cfg = index_config(tmp_path, str(tmp_path / "src"), tiny_embedding_checkpoint, run_id="build")
    assert run_cli(["index", "--config", cfg]) == ExitCode.OK
    nightly = ["index", "--config", cfg, "--set", "run.mode=incremental"]
    assert run_cli([*nightly, "--set", "run.run_id=n1", "--set", "qdrant.hnsw_m=24"]) == ExitCode.OK
    assert read_report(tmp_path, "n1")["settings_applied"] == ["qdrant.hnsw_m: 16 -> 24"]
    capsys.readouterr()
    assert run_cli([*nightly, "--set", "run.run_id=n2", "--set", "qdrant.hnsw_m=24",
                    "--set", "qdrant.shard_number=2"]) == ExitCode.CONFIG_ERROR
    assert "shard_number" in capsys.readouterr().err
    assert not (run_dir(tmp_path, "n2") / "state.json").exists()  # refused before the run began


def test_an_upgraded_deployment_reads_its_manifest_from_the_legacy_output_uri(ray_session, tmp_path,
                                                                                tiny_embedding_checkpoint):
    from qbatch.connectors.manifest_store import ManifestReader, read_current

    rows = catalog_rows(16)
    write_corpus(tmp_path / "src", rows, n_files=1)
    cfg = index_config(tmp_path, str(tmp_path / "src"), tiny_embedding_checkpoint, run_id="old-layout")
    legacy, new = tmp_path / "runs" / "catalog", tmp_path / "qbatch"  # the shipped configs' old and new roots
    assert run_cli(["index", "--config", cfg, "--set", f"run.output_uri='{legacy}'"]) == ExitCode.OK
    rows[0]["description"] += " Now in stock."
    write_corpus(tmp_path / "src", rows, n_files=1)
    assert run_cli(["index", "--config", cfg, "--set", f"run.output_uri='{new}'", "--set",
                    f"run.legacy_output_uri='{legacy}'", "--set", "run.mode=incremental",
                    "--set", "run.run_id=first-after-upgrade"]) == ExitCode.OK
    report = json.loads((new / "catalog" / "runs" / "first-after-upgrade" / "report.json").read_text())
    assert report["mode"] == "incremental" and report["diff"]["changed"] == 1  # diffed against the old manifest
    assert read_current(str(new), "catalog") == "catalog__old-layout@first-after-upgrade"
    assert ManifestReader(str(new), "catalog", "catalog__old-layout@first-after-upgrade").summary()["docs"] == 16
    assert read_current(str(legacy), "catalog") == "catalog__old-layout"  # the legacy copy is left as it was
