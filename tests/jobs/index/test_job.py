"""The index job end to end on real parts: local Ray, Qdrant local mode, moto's S3 server, the tiny
Qwen3 checkpoint with the real Qwen vocabulary (and MiniLM for retrieval quality)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qbatch.connectors.dead_letter_writer import read_dead_letter
from qbatch.connectors.point_ids import QBATCH_NAMESPACE, point_id
from qbatch.jobs.runtime.exit_codes import ExitCode
from tests.jobs.index.index_fixtures import (all_points, catalog_rows, index_config, qdrant_at, read_report, run_cli,
                                             run_cli_subprocess)


def test_s3_corpus_end_to_end_subprocess_and_rerun(tmp_path, tiny_embedding_checkpoint, s3_client, s3_bucket,
                                                   moto_s3_endpoint):
    rows = catalog_rows(2400)
    per = 400
    for k in range(6):  # several Parquet and JSONL files in the bucket
        part = rows[k * per:(k + 1) * per]
        if k % 2 == 0:
            sink = pa.BufferOutputStream()
            pq.write_table(pa.Table.from_pylist(part), sink)
            body = sink.getvalue().to_pybytes()
            key = f"catalog/part-{k}.parquet"
        else:
            body = "".join(json.dumps(r) + "\n" for r in part).encode()
            key = f"catalog/part-{k}.jsonl"
        s3_client.put_object(Bucket=s3_bucket, Key=key, Body=body)
    # Bad rows in one more file: a duplicate id and an empty text.
    s3_client.put_object(Bucket=s3_bucket, Key="catalog/part-9.jsonl", Body=(
        json.dumps({**rows[0], "title": "dup"}) + "\n" + json.dumps({"id": "x1", "title": "", "description": ""})
        + "\n").encode())
    cfg = index_config(tmp_path, f"s3://{s3_bucket}/catalog", tiny_embedding_checkpoint,
                       extra=f'[source.storage]\nendpoint_url = "{moto_s3_endpoint}"\n')
    first = run_cli_subprocess(["index", "--config", cfg])
    assert first.returncode == 0, first.stderr[-3000:]
    report = read_report(tmp_path, "r1")
    assert report["counts"]["read"] == 2402
    assert report["counts"]["docs_upserted"] == 2400
    assert report["counts"]["rejected"] == {"duplicate_id": 1, "empty_text": 1}
    assert report["counts"]["read"] == report["counts"]["docs_upserted"] + report["counts"]["rejected_total"]
    assert report["tokens"]["real"] > 0 and 0 < report["tokens"]["padding_efficiency"] <= 1
    dead = read_dead_letter(str(tmp_path / "out" / "catalog"), "r1").to_pylist()
    assert sorted((d["doc_id"], d["reason"]) for d in dead) == [("d00000", "duplicate_id"), ("x1", "empty_text")]
    assert all(d["original_row"] for d in dead)

    with qdrant_at(tmp_path / "qdrant") as client:
        assert client.count("catalog", exact=True).count == 2400
        points = all_points(client, "catalog")
    assert set(points) == {point_id(r["id"], 0) for r in rows}  # deterministic ids, uuid5(NAMESPACE, "id#0")
    assert str(QBATCH_NAMESPACE) == "1814d781-8df1-42ec-837d-599d88e30924"
    vec, payload = points[point_id("d00007", 0)]
    assert payload["doc_id"] == "d00007" and payload["chunk"] == 0 and payload["run_id"] == "r1"
    assert payload["text"] == f"{rows[7]['title']}\n{rows[7]['description']}"
    assert payload["span"] == [0, len(payload["text"])] and payload["price"] == rows[7]["price"]
    assert payload["lang"] == rows[7]["lang"] and len(payload["content_hash"]) == 64
    assert abs(np.linalg.norm(vec) - 1) < 1e-4
    assert {"doc_id", "chunk", "span", "text", "lang", "content_hash", "payload_hash", "indexed_at",
            "run_id", "price"} == set(payload)

    again = run_cli_subprocess(["index", "--config", cfg])  # same run id: a finished run does nothing
    assert again.returncode == 0 and "already finished" in again.stdout
    second = run_cli_subprocess(["index", "--config", cfg, "--set", "run.run_id=r2"])
    assert second.returncode == 0, second.stderr[-3000:]
    with qdrant_at(tmp_path / "qdrant") as client:
        assert client.count("catalog", exact=True).count == 2400  # nothing duplicated
        assert set(all_points(client, "catalog")) == set(points)


def test_fuzzed_corpus_lands_exactly_the_good_rows(ray_session, tmp_path, tiny_embedding_checkpoint):
    src = tmp_path / "src"
    src.mkdir()
    good = {f"g{i}": f"real text number {i}" for i in range(12)}
    lines = [json.dumps({"id": k, "title": v, "description": ""}) for k, v in list(good.items())[:6]]
    lines += [
        json.dumps({"id": None, "title": "no id"}),                 # missing_id
        json.dumps({"id": "e1", "title": "", "description": ""}),   # empty_text
        json.dumps({"id": "w1", "title": ["not", "text"]}),         # non_string_field
        '{"id": "b1", "title": "broken',                             # broken_json
        json.dumps({"id": "g0", "title": "again"}),                  # duplicate_id
        json.dumps({"id": "long", "title": "x " * 50_000}),          # 100k characters: truncated, lands
    ]
    raw = ("\n".join(lines) + "\n").encode() + b'{"id": "u1", "title": "bad \xff\xfe bytes"}\n'
    (src / "a.jsonl").write_bytes(raw)
    csv_rows = ['id,title,description'] + [f'{k},"{v}","line one\nline two"' for k, v in list(good.items())[6:]]
    csv_rows += ['c9,"too","many","fields"']                          # csv_parse_error
    (src / "b.csv").write_text("\n".join(csv_rows) + "\n")
    cfg = index_config(tmp_path, str(src), tiny_embedding_checkpoint, extra="max_reject_ratio = 0.9")
    assert run_cli(["index", "--config", cfg]) == ExitCode.OK
    report = read_report(tmp_path, "r1")
    assert report["counts"]["rejected"] == {"bad_utf8": 1, "broken_json": 1, "csv_parse_error": 1,
                                            "duplicate_id": 1, "empty_text": 1, "missing_id": 1,
                                            "non_string_field": 1}
    assert report["counts"]["read"] == 20 == report["counts"]["docs_upserted"] + report["counts"]["rejected_total"]
    assert report["counts"]["truncated"] == 1
    with qdrant_at(tmp_path / "qdrant") as client:
        landed = {p[1]["doc_id"] for p in all_points(client, "catalog").values()}
        text_b = all_points(client, "catalog")[point_id("g7", 0)][1]["text"]
    assert landed == set(good) | {"long"}
    assert "line one\nline two" in text_b  # CSV with embedded newlines
    dead = read_dead_letter(str(tmp_path / "out" / "catalog"), "r1").to_pylist()
    assert sorted(d["reason"] for d in dead) == sorted(report["counts"]["rejected"])
    assert all(d["stage"] in ("read", "prep", "plan") and d["file"] for d in dead)


def test_reject_ratio_above_limit_exits_non_zero_and_never_switches_the_alias(ray_session, tmp_path,
                                                                            tiny_embedding_checkpoint):
    """Good rows land in the new collection (kept for inspection), but a broken export never goes live."""
    from qbatch.connectors.qdrant_aliases import alias_target

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.jsonl").write_text(json.dumps({"id": "a", "title": "fine"}) + "\n" + "{broken\n" * 3)
    cfg = index_config(tmp_path, str(src), tiny_embedding_checkpoint)
    assert run_cli(["index", "--config", cfg]) == ExitCode.REJECT_RATIO_EXCEEDED
    report = read_report(tmp_path, "r1")
    assert report["exit"]["status"] == "reject_ratio_exceeded" and report["counts"]["rejected_total"] == 3
    with qdrant_at(tmp_path / "qdrant") as client:
        assert client.count("catalog__r1", exact=True).count == 1
        assert alias_target(client, "catalog") is None
    assert read_dead_letter(str(tmp_path / "out" / "catalog"), "r1").num_rows == 3


def test_empty_source_is_a_clear_source_error(tmp_path, tiny_embedding_checkpoint, capsys):
    (tmp_path / "empty").mkdir()
    cfg = index_config(tmp_path, str(tmp_path / "empty"), tiny_embedding_checkpoint)
    assert run_cli(["index", "--config", cfg]) == ExitCode.SOURCE_ERROR
    assert str(tmp_path / "empty") in capsys.readouterr().err


def test_unreachable_qdrant_fails_fast_naming_url_not_key(tmp_path, tiny_embedding_checkpoint):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    cfg = index_config(tmp_path, str(tmp_path / "does-not-exist"), tiny_embedding_checkpoint)
    text = cfg.read_text().replace(f'path = "{tmp_path / "qdrant"}"',
                                   f'url = "http://127.0.0.1:{port}"\napi_key = "sk-test-very-secret-4242"\ntimeout_s = 2')
    cfg.write_text(text)
    out = run_cli_subprocess(["index", "--config", cfg], timeout=120)
    assert out.returncode == ExitCode.SINK_UNREACHABLE
    assert f"127.0.0.1:{port}" in out.stderr and "sk-test-very-secret-4242" not in out.stderr + out.stdout
    assert "does-not-exist" not in out.stderr  # it never got as far as the source


def test_guard_refuses_other_dim_or_model_before_embedding(ray_session, tmp_path, tiny_embedding_checkpoint,
                                                           minilm_checkpoint, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.jsonl").write_text("".join(json.dumps({"id": f"i{i}", "title": f"t {i}"}) + "\n" for i in range(5)))
    cfg = index_config(tmp_path, str(src), tiny_embedding_checkpoint)
    assert run_cli(["index", "--config", cfg]) == ExitCode.OK
    capsys.readouterr()
    assert run_cli(["index", "--config", cfg, "--set", "run.run_id=r2", "--set", "embed.dim=32"]) == ExitCode.GATE_FAILED
    err = capsys.readouterr().err
    assert "dim: 64 -> 32" in err
    assert run_cli(["index", "--config", cfg, "--set", "run.run_id=r3", "--set",
                    f"embed.model='{minilm_checkpoint}'"]) == ExitCode.GATE_FAILED
    assert "model_revision" in capsys.readouterr().err
    assert not (tmp_path / "out" / "catalog" / "runs" / "r2").exists()  # refused before any work: no run state


@pytest.mark.parametrize("k", [10])
def test_real_quality_recall_through_qdrant_equals_brute_force(ray_session, tmp_path, minilm_checkpoint,
                                                               stdlib_pairs, k):
    """MiniLM on ~900 standard-library docstrings: summary = query, body = the one relevant document."""
    from qbatch.pipeline.embedder import Embedder

    src = tmp_path / "src"
    src.mkdir()
    (src / "docs.jsonl").write_text("".join(json.dumps({"id": p["id"], "text": p["document"]}) + "\n"
                                            for p in stdlib_pairs))
    cfg = index_config(tmp_path, str(src), minilm_checkpoint)
    cfg.write_text(cfg.read_text().replace('text_template = "{title}\\n{description}"', 'text = "text"')
                   .replace('lang = "lang"', "").replace('payload = ["price"]', "payload = []"))
    assert run_cli(["index", "--config", cfg]) == ExitCode.OK
    emb = Embedder.from_pretrained(minilm_checkpoint)
    queries = emb.embed_queries([p["query"] for p in stdlib_pairs])
    ids = [p["id"] for p in stdlib_pairs]
    with qdrant_at(tmp_path / "qdrant") as client:
        stored = all_points(client, "catalog")
        hits_qdrant = [[h.payload["doc_id"] for h in client.query_points("catalog", query=q.tolist(), limit=k,
                                                                           with_payload=True).points]
                       for q in queries]
    matrix = np.stack([stored[point_id(i, 0)][0] for i in ids])
    top = np.argsort(-(queries @ matrix.T), axis=1)[:, :k]
    recall_brute = float(np.mean([ids[i] in {ids[j] for j in top[i]} for i in range(len(ids))]))
    recall_qdrant = float(np.mean([ids[i] in hits_qdrant[i] for i in range(len(ids))]))
    assert recall_qdrant == pytest.approx(recall_brute, abs=1e-9)
    assert recall_qdrant >= 0.65, recall_qdrant


def _ray_chatter(stderr: str) -> list[str]:
    """Ray's INFO lines: dataset progress (logging_progress.py), "execution finished" (streaming_executor.py)."""
    return [line for line in stderr.splitlines()
            if "streaming_executor" in line or "logging_progress" in line or " INFO " in line]


def test_a_quiet_run_prints_no_ray_chatter_and_reports_startup_and_precision(tmp_path, tiny_embedding_checkpoint):
    import torch

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in catalog_rows(30)))
    cfg = index_config(tmp_path, str(src), tiny_embedding_checkpoint)
    run = run_cli_subprocess(["index", "--config", cfg, "--log-level", "WARNING"])
    assert run.returncode == 0, run.stderr[-3000:]
    assert _ray_chatter(run.stderr) == [], run.stderr[-3000:]
    assert "Loading weights" not in run.stderr and "Progress bars disabled" not in run.stderr
    report = read_report(tmp_path, "r1")
    stages = report["stages_seconds"]
    # Startup: from the run's start until the first embed call began; Ray start, the plan's scan and the
    # load pass's actors are parts of it, one after the other; the first vector comes later still.
    startup = stages["startup (before the first embed batch)"]
    parts = [stages["ray start (part of startup)"], stages["plan scan (part of startup)"],
             stages["actors, models, first block (part of startup)"]]
    assert all(part > 0 for part in parts) and sum(parts) <= startup + 0.05 < stages["total wall"]
    first_ack = stages["first acknowledgement (from the load pass start)"]
    assert stages["actors, models, first block (part of startup)"] < first_ack
    # The actors chose their precision from what torch reports about this CPU; the report and the
    # collection record it, for information.
    caps = torch.cpu.get_capabilities()
    expected = "bfloat16" if caps.get("amx_bf16") or caps.get("avx512_bf16") else "float32"
    assert report["model"]["precision"] == expected
    with qdrant_at(tmp_path / "qdrant") as client:
        assert client.get_collection("catalog").config.metadata["qbatch"]["precision"] == [expected]


def test_debug_log_level_shows_rays_progress_lines(tmp_path, tiny_embedding_checkpoint):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in catalog_rows(10)))
    cfg = index_config(tmp_path, str(src), tiny_embedding_checkpoint)
    run = run_cli_subprocess(["index", "--config", cfg, "--log-level", "DEBUG"])
    assert run.returncode == 0, run.stderr[-3000:]
    assert any("streaming_executor" in line for line in _ray_chatter(run.stderr)), run.stderr[-3000:]
