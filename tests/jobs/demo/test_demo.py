"""The `make demo` code path, so the demo cannot rot: index the sample catalog offline with the
packaged MiniLM, run the example queries, rerank the sample log with the stand-in reranker."""

from __future__ import annotations

import json

from qbatch.jobs.demo import offline_models, run_demo


def test_demo_runs_offline_end_to_end(ray_session, tmp_path, capsys, monkeypatch, recwarn):
    monkeypatch.setattr(offline_models, "cached_checkpoint", lambda name: None)  # as on a machine with no Qwen3 weights
    assert run_demo.main(["--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "not available offline; using the packaged all-MiniLM-L6-v2" in out
    assert out.count("query: ") == 8  # every example query printed its hits
    assert "plumbing only, not quality" in out and "ndcg@10" in out
    # The sample's obvious query finds its product through the whole stack.
    block = out.split("query: cast iron pan", 1)[1].split("query: ", 1)[0]
    assert "p0017" in block or "p0029" in block
    reports = list((tmp_path / "demo" / "demo_catalog" / "runs").glob("*/report.json"))
    assert not list((tmp_path / "demo").rglob("runs/runs")) and not list((tmp_path / "demo").rglob("demo_catalog/demo_catalog"))
    assert len(reports) == 1 and json.loads(reports[0].read_text())["counts"]["docs_upserted"] == 150
    # The demo's payload indexes go to local mode, where qdrant-client would warn on every run.
    assert not [w for w in recwarn if "Payload indexes have no effect" in str(w.message)]
