"""The nightly lifecycle on real parts: blue/green alias swaps, gates, incremental refresh, the lock,
crash-and-resume and actor failure (local Ray, Qdrant local mode, moto S3 for manifests)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from qbatch.connectors.point_ids import point_id
from qbatch.jobs.runtime.exit_codes import ExitCode
from tests.fixtures.moto_s3 import FAKE_ACCESS_KEY, FAKE_SECRET_KEY
from tests.jobs.index.index_fixtures import (REPO, all_points, catalog_rows, index_config, qdrant_at, read_report,
                                             run_cli, start_index_run, wait_for, write_corpus)


def _aliases(tmp_path) -> tuple[str | None, list[str]]:
    from qbatch.connectors.qdrant_aliases import alias_target

    with qdrant_at(tmp_path / "qdrant") as client:
        return alias_target(client, "catalog"), sorted(c.name for c in client.get_collections().collections)


def test_blue_green_keep_and_rollback_with_manifests_on_s3(ray_session, tmp_path, tiny_embedding_checkpoint,
                                                          s3_bucket, moto_s3_endpoint, capsys):
    from qbatch.connectors.manifest_store import read_current

    src = tmp_path / "src"
    write_corpus(src, catalog_rows(30), n_files=2)
    out = f"s3://{s3_bucket}/qbatch"
    storage = (f'[source.storage]\nendpoint_url = "{moto_s3_endpoint}"\naccess_key_id = "{FAKE_ACCESS_KEY}"\n'
               f'secret_access_key = "{FAKE_SECRET_KEY}"\n')
    cfg = index_config(tmp_path, str(src), tiny_embedding_checkpoint, extra=storage)
    run = lambda rid: run_cli(["index", "--config", cfg, "--set", f"run.run_id={rid}",  # noqa: E731
                               "--set", f"run.output_uri='{out}'"])
    assert run("run1") == ExitCode.OK
    assert _aliases(tmp_path) == ("catalog__run1", ["catalog__run1"])
    assert run("run2") == ExitCode.OK
    assert _aliases(tmp_path) == ("catalog__run2", ["catalog__run1", "catalog__run2"])
    assert run("run3") == ExitCode.OK  # keep=2: run1 goes only now, after run3 succeeded
    assert _aliases(tmp_path) == ("catalog__run3", ["catalog__run2", "catalog__run3"])

    from qbatch.connectors.source_config import ObjectStoreOptions

    s3 = ObjectStoreOptions(endpoint_url=moto_s3_endpoint, access_key_id=FAKE_ACCESS_KEY,
                            secret_access_key=FAKE_SECRET_KEY)
    assert read_current(out, "catalog", s3) == "catalog__run3"
    capsys.readouterr()
    admin = ["--config", cfg, "--set", f"run.output_uri='{out}'", "--alias", "catalog"]
    assert run_cli(["index", "status", *admin]) == 0
    status = capsys.readouterr().out
    assert "* catalog__run3" in status and "catalog__run2" in status and "catalog__run1" not in status
    assert run_cli(["index", "rollback", *admin]) == 0
    assert _aliases(tmp_path)[0] == "catalog__run2"
    assert read_current(out, "catalog", s3) == "catalog__run2"  # the manifest follows the alias


def test_min_size_gate_refuses_a_truncated_source_in_full_and_incremental(ray_session, tmp_path,
                                                                         tiny_embedding_checkpoint):
    rows = catalog_rows(40)
    write_corpus(tmp_path / "full", rows, n_files=2)
    write_corpus(tmp_path / "half", rows[:20], n_files=2)
    cfg = index_config(tmp_path, str(tmp_path / "full"), tiny_embedding_checkpoint)
    assert run_cli(["index", "--config", cfg]) == ExitCode.OK
    with qdrant_at(tmp_path / "qdrant") as client:
        before = all_points(client, "catalog")

    half = ["--set", f"source.uri='{tmp_path / 'half'}'"]
    assert run_cli(["index", "--config", cfg, *half, "--set", "run.run_id=r2"]) == ExitCode.GATE_FAILED
    report = read_report(tmp_path, "r2")
    assert report["exit"]["status"] == "gate_failed"
    assert [g["passed"] for g in report["gates"] if g["gate"] == "minimum_size"] == [False]
    assert _aliases(tmp_path) == ("catalog__r1", ["catalog__r1", "catalog__r2"])  # new one kept for inspection

    assert run_cli(["index", "--config", cfg, *half, "--set", "run.run_id=r3",
                    "--set", "run.mode=incremental"]) == ExitCode.GATE_FAILED
    report = read_report(tmp_path, "r3")
    assert "refused before writing anything" in report["exit"]["reason"]
    assert report["counts"]["docs_upserted"] == 0
    with qdrant_at(tmp_path / "qdrant") as client:
        assert all_points(client, "catalog") == before  # the live collection is untouched


def test_golden_query_regression_is_refused(ray_session, tmp_path, minilm_checkpoint):
    rows = [json.loads(line) for line in (REPO / "examples" / "sample_catalog.jsonl").read_text().splitlines()]
    golden = [json.loads(line) for line in (REPO / "examples" / "golden_queries.jsonl").read_text().splitlines()]
    expected = {d for g in golden for d in g["expected_doc_ids"]}
    write_corpus(tmp_path / "good", rows, n_files=1, formats=("jsonl",))
    broken = [dict(r, title="Lorem ipsum", description="dolor sit amet") if r["id"] in expected else r for r in rows]
    write_corpus(tmp_path / "bad", broken, n_files=1, formats=("jsonl",))
    gates = (f'[gates]\ngolden_queries = "{REPO / "examples" / "golden_queries.jsonl"}"\n'
             "golden_min_recall = 0.0\ngolden_max_drop = 0.05\n")
    cfg = index_config(tmp_path, str(tmp_path / "good"), minilm_checkpoint, extra=gates)
    cfg.write_text(cfg.read_text().replace('payload = ["price"]', 'payload = ["price", "brand"]'))
    assert run_cli(["index", "--config", cfg]) == ExitCode.OK
    live_recall = next(g for g in read_report(tmp_path, "r1")["gates"] if g["gate"] == "golden_recall")
    assert live_recall["passed"] and live_recall["new_recall"] > 0.5
    assert run_cli(["index", "--config", cfg, "--set", f"source.uri='{tmp_path / 'bad'}'",
                    "--set", "run.run_id=r2"]) == ExitCode.GATE_FAILED
    gate = next(g for g in read_report(tmp_path, "r2")["gates"] if g["gate"] == "golden_recall")
    assert not gate["passed"] and gate["new_recall"] < gate["live_recall"] - 0.05
    assert _aliases(tmp_path)[0] == "catalog__r1"


def test_model_change_needs_full_mode_and_allow_model_change(ray_session, tmp_path, tiny_embedding_checkpoint):
    write_corpus(tmp_path / "src", catalog_rows(10), n_files=1)
    cfg = index_config(tmp_path, str(tmp_path / "src"), tiny_embedding_checkpoint)
    assert run_cli(["index", "--config", cfg]) == ExitCode.OK
    for mode in ("incremental", "full"):
        assert run_cli(["index", "--config", cfg, "--set", "embed.dim=32", "--set", f"run.mode={mode}",
                        "--set", f"run.run_id=x{mode}"]) == ExitCode.GATE_FAILED
        assert not (tmp_path / "out" / "catalog" / "runs" / f"x{mode}").exists()  # refused before any work
    assert run_cli(["index", "--config", cfg, "--set", "embed.dim=32", "--set", "run.run_id=r2",
                    "--set", "gates.allow_model_change=true"]) == ExitCode.OK
    with qdrant_at(tmp_path / "qdrant") as client:
        assert client.get_collection("catalog").config.params.vectors.size == 32


def _chunked(tmp_path, src, model, alias, run_id, mode="full"):
    cfg = index_config(tmp_path, str(src), model, alias=alias, run_id=run_id, mode=mode,
                       extra="[chunking]\nenabled = true\nmax_tokens = 24\noverlap = 4\n")
    # Pinned to fp32: the test compares vectors embedded in different batches at 1e-5, and bf16
    # rounding depends on the batch (up to 4e-3 here).
    cfg.write_text(cfg.read_text().replace("[embed]\n", '[embed]\ndtype = "float32"\n', 1))
    return cfg


def _chunks_per_doc(tmp_path, alias: str = "catalog") -> dict[str, int]:
    with qdrant_at(tmp_path / "qdrant") as client:
        counts: dict[str, int] = {}
        for _, payload in all_points(client, alias).values():
            counts[payload["doc_id"]] = counts.get(payload["doc_id"], 0) + 1
    return counts


def test_incremental_embeds_only_what_changed_and_equals_a_fresh_build(ray_session, tmp_path,
                                                                      tiny_embedding_checkpoint):
    rows = catalog_rows(40)
    write_corpus(tmp_path / "v1", rows, n_files=3)
    cfg = _chunked(tmp_path, tmp_path / "v1", tiny_embedding_checkpoint, "catalog", "r1")
    assert run_cli(["index", "--config", cfg]) == ExitCode.OK
    v1 = _chunks_per_doc(tmp_path)
    v2 = [dict(r) for r in rows]
    for r in v2[0:3]:
        r["description"] += " Updated copy for the new season."          # 3 changed
    shortened = next(r for r in v2[3:10] if v1[r["id"]] >= 2)
    shortened["description"] = ""                                         # 1 shortened: loses chunks
    for r in v2[10:12]:
        r["price"] = r["price"] + 1                                      # 2 payload-only
    deleted = [r["id"] for r in v2[20:24]]
    v2 = [r for r in v2 if r["id"] not in deleted]                       # 4 deleted
    extra = catalog_rows(50)
    v2 += [dict(extra[45], id="new1"), dict(extra[46], id="new2")]       # 2 new
    write_corpus(tmp_path / "v2", v2, n_files=3)

    assert run_cli(["index", "--config", cfg, "--set", f"source.uri='{tmp_path / 'v2'}'", "--set", "run.run_id=r2",
                    "--set", "run.mode=incremental"]) == ExitCode.OK
    report = read_report(tmp_path, "r2")
    assert report["diff"] == {"new_docs": 2, "changed": 4, "payload_only": 2, "deleted": 4,
                              "unchanged": len(rows) - 4 - 2 - 4}
    assert report["counts"]["docs_upserted"] == 6  # embedded exactly the changed, new and shortened docs
    assert report["incremental"]["payload_updated_docs"] == 2
    v2_chunks = _chunks_per_doc(tmp_path)
    lost = v1[shortened["id"]] - v2_chunks[shortened["id"]]
    assert lost >= 1
    assert report["incremental"]["deleted_points"] == sum(v1[d] for d in deleted) + lost
    assert not set(deleted) & set(v2_chunks)

    fresh = _chunked(tmp_path, tmp_path / "v2", tiny_embedding_checkpoint, "fresh", "f1")
    assert run_cli(["index", "--config", fresh]) == ExitCode.OK
    with qdrant_at(tmp_path / "qdrant") as client:
        a, b = all_points(client, "catalog"), all_points(client, "fresh")
    assert set(a) == set(b)
    volatile = {"indexed_at", "run_id"}
    for pid, (vec, payload) in b.items():
        np.testing.assert_allclose(a[pid][0], vec, atol=1e-5)
        assert {k: v for k, v in a[pid][1].items() if k not in volatile} == \
            {k: v for k, v in payload.items() if k not in volatile}

    assert run_cli(["index", "--config", cfg, "--set", f"source.uri='{tmp_path / 'v2'}'", "--set",
                    "run.run_id=r3", "--set", "run.mode=incremental"]) == ExitCode.OK
    report = read_report(tmp_path, "r3")  # nothing changed: nothing embedded, nothing written
    assert report["counts"]["docs_upserted"] == 0 and report["diff"]["unchanged"] == len(v2)
    assert report["incremental"] == {"payload_updated_docs": 0, "deleted_points": 0}


def test_second_concurrent_run_gets_the_locked_code(tmp_path, tiny_embedding_checkpoint):
    write_corpus(tmp_path / "src", catalog_rows(60), n_files=6)
    cfg = index_config(tmp_path, str(tmp_path / "src"), tiny_embedding_checkpoint)
    first = start_index_run(cfg, "r1", {"QBATCH_TEST_EMBED_DELAY_S": "1.0"})
    try:
        wait_for(lambda: (tmp_path / "out" / "catalog" / "LOCK").exists(), 240, first)
        second = subprocess.run([sys.executable, "-m", "qbatch.jobs.cli", "index", "--config", str(cfg), "--set",
                                 "run.run_id=r2", "--set", f"qdrant.path='{tmp_path / 'other-qdrant'}'"],
                                cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                                text=True, timeout=240)
        assert second.returncode == ExitCode.LOCKED, second.stderr[-2000:]
        assert "r1" in second.stderr
        assert first.wait(timeout=600) == ExitCode.OK, first.stderr.read()[-3000:]
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)


def test_crash_with_sigkill_then_resume_gives_exact_counts(tmp_path, tiny_embedding_checkpoint):
    rows = catalog_rows(240)
    write_corpus(tmp_path / "src", rows, n_files=12)
    cfg = index_config(tmp_path, str(tmp_path / "src"), tiny_embedding_checkpoint)
    cfg.write_text(cfg.read_text().replace("batch_size = 64", "batch_size = 10"))
    files_dir = tmp_path / "out" / "catalog" / "runs" / "r1" / "files"
    proc = start_index_run(cfg, "r1", {"QBATCH_TEST_EMBED_DELAY_S": "0.4"})
    try:
        wait_for(lambda: files_dir.exists() and len(list(files_dir.glob("*.done.json"))) >= 3, 400, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its local Ray, mid-run
        proc.wait()
    done_before = len(list(files_dir.glob("*.done.json")))
    assert 3 <= done_before < 12
    resumed = subprocess.run([sys.executable, "-m", "qbatch.jobs.cli", "index", "--config", str(cfg)], cwd=REPO,
                             env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    report = read_report(tmp_path, "r1")
    print("resume figures:", report["resume"])  # quoted in the issue's closing note (pytest -s)
    assert report["counts"]["read"] == 240 == report["counts"]["docs_upserted"]
    assert report["resume"]["attempt"] == 2
    assert report["resume"]["files_done_by_earlier_attempts"] >= done_before
    assert report["resume"]["docs_redone"] <= 240 - 20 * done_before  # at most the work in flight
    with qdrant_at(tmp_path / "qdrant") as client:
        points = all_points(client, "catalog")
    doc_ids = [p["doc_id"] for _, p in points.values()]
    assert len(doc_ids) == len(set(doc_ids)) == 240
    assert set(points) == {point_id(r["id"], 0) for r in rows}


def test_an_embed_actor_dying_mid_run_is_retried_with_exact_counts(tmp_path, tiny_embedding_checkpoint):
    rows = catalog_rows(120)
    write_corpus(tmp_path / "src", rows, n_files=4)
    cfg = index_config(tmp_path, str(tmp_path / "src"), tiny_embedding_checkpoint)
    cfg.write_text(cfg.read_text().replace("batch_size = 64", "batch_size = 16"))
    trigger = tmp_path / "fail-once"
    trigger.write_text("")
    out = subprocess.run([sys.executable, "-m", "qbatch.jobs.cli", "index", "--config", str(cfg)], cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO), "QBATCH_TEST_FAIL_ONCE_FILE": str(trigger)},
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert not trigger.exists()  # an actor really died
    report = read_report(tmp_path, "r1")
    assert report["counts"]["read"] == 120 == report["counts"]["docs_upserted"] == report["counts"]["points_upserted"]
    with qdrant_at(tmp_path / "qdrant") as client:
        assert client.count("catalog", exact=True).count == 120


class RecordingClient:
    """CALL-SEQUENCE RECORDER, not a fake: forwards every call to a real local-mode client and records
    the lifecycle calls, because local mode ignores HNSW settings and cannot show bulk loading."""

    WATCHED = ("create_collection", "update_collection", "get_collection", "update_collection_aliases", "upsert")

    def __init__(self, real):
        self._real, self.calls = real, []

    def __getattr__(self, name):
        attr = getattr(self._real, name)
        if name not in self.WATCHED:
            return attr

        def record(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            return attr(*args, **kwargs)
        return record


def test_full_mode_bulk_loads_with_indexing_off_then_on_then_waits_for_green(ray_session, tmp_path, monkeypatch,
                                                                           tiny_embedding_checkpoint):
    """Call-sequence test: create with m=0, upserts (by the writer actor, while the driver's client is
    released), update to m=16, wait for green, then the alias switch."""
    import qbatch.connectors.qdrant_connection as qc

    real_connect, recorders = qc.connect, []

    def recording_connect(cfg):
        recorders.append(RecordingClient(real_connect(cfg)))
        return recorders[-1]

    monkeypatch.setattr(qc, "connect", recording_connect)
    write_corpus(tmp_path / "src", catalog_rows(10), n_files=1)
    assert run_cli(["index", "--config", index_config(tmp_path, str(tmp_path / "src"), tiny_embedding_checkpoint)]) == 0
    # The driver's client: one before the load pass, released to the writer actor during it, reopened after.
    assert len(recorders) == 2
    before, after = [name for name, _, _ in recorders[0].calls], [name for name, _, _ in recorders[1].calls]
    assert "upsert" not in before + after  # the points went from the writer actor, never from the driver
    create = before.index("create_collection")
    assert recorders[0].calls[create][2]["hnsw_config"].m == 0
    update = next(i for i, (name, _, kwargs) in enumerate(recorders[1].calls)
                  if name == "update_collection" and kwargs.get("hnsw_config") is not None)
    assert recorders[1].calls[update][2]["hnsw_config"].m == 16
    names = after
    green = names.index("get_collection", update)
    with qdrant_at(tmp_path / "qdrant") as client:
        assert client.count("catalog", exact=True).count == 10  # loaded between the create and the update
    assert update < green < names.index("update_collection_aliases")
