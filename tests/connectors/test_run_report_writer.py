"""The run report: written to a local output folder, read back, and checked for its figures and secrets."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest

from qbatch.connectors.qdrant_config import QdrantConfig
from qbatch.connectors.run_report_writer import (REDACTED, redact, render_markdown, render_png, report_figure, stage_seconds,
                                          write_run_report)

FAKE_KEY = "fake-qdrant-key-0c8e51b7a2"  # not a real credential: only checked for absence below

REPORT = {
    "run_id": "r-2026-01-02",
    "job": "index",
    "collection": "docs__20260102",
    "model": "Qwen/Qwen3-Embedding-0.6B",
    "exit": "ok: alias docs -> docs__20260102",
    "counts": {"read": 123456, "rejected": {"empty": 12, "too_long": 3}, "chunks": 250000, "embedded": 249990,
               "upserted": 249990},
    "tokens": {"total": 98765432, "tokens_per_s": 45210.5, "padding_efficiency": 0.934},
    "stages_seconds": {"read": 12.5, "embed": 2150.0, "upsert": {"wall_s": 310.2}},
    "throughput": [[0, 0], [60, 9000], [120, 21000], [180, 33000]],
    "qdrant": {"url": "https://q.example:6333", "api_key": FAKE_KEY},
    "writer": {"points_written": 249990, "retries": 2},
    "notes": f"connected with key {FAKE_KEY}",
}


def test_writes_json_markdown_and_png_that_read_back(tmp_path):
    uris = write_run_report(str(tmp_path / "out"), "r-2026-01-02", REPORT, secrets=[FAKE_KEY])
    run_dir = tmp_path / "out" / "runs" / "r-2026-01-02"
    assert {k: Path(v) for k, v in uris.items()} == {
        "json": run_dir / "report.json", "md": run_dir / "report.md", "png": run_dir / "report.png"}

    back = json.loads((run_dir / "report.json").read_text())
    assert back["counts"] == REPORT["counts"] and back["throughput"] == REPORT["throughput"]
    assert back["qdrant"] == {"url": "https://q.example:6333", "api_key": REDACTED}

    md = (run_dir / "report.md").read_text()
    for figure in ["123,456", "250,000", "249,990", "| rejected.empty | 12 |", "| rejected.too_long | 3 |",
                   "98,765,432", "| tokens_per_s | 45,210 |", "| padding_efficiency | 93.4% |", "| embed | 2,150.0 |", "| upsert | 310.2 |",
                   "docs__20260102", "Qwen/Qwen3-Embedding-0.6B", "**Exit decision:** ok: alias docs",
                   "33,000 rows at 180.0 s", "## Writer", "| retries | 2 |", "| url | https://q.example:6333 |"]:
        assert figure in md, figure

    assert (run_dir / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("report.json", "report.md", "report.png"):
        assert FAKE_KEY.encode() not in (run_dir / name).read_bytes()


def test_secrets_never_leak_from_configs_or_strings(tmp_path):
    report = {"config": QdrantConfig(url="https://q.example", api_key=FAKE_KEY),
              "env": {"AWS_SECRET_ACCESS_KEY": "s3cr3t", "session_token": "tok", "tokens": 5, "tokens_per_s": 2.0},
              "log": [f"Authorization: Bearer {FAKE_KEY}"]}
    uris = write_run_report(str(tmp_path), "r1", report, secrets=[FAKE_KEY])
    text = Path(uris["json"]).read_text() + Path(uris["md"]).read_text()
    assert FAKE_KEY not in text and "s3cr3t" not in text and '"tok"' not in text
    back = json.loads(Path(uris["json"]).read_text())
    assert back["env"] == {"AWS_SECRET_ACCESS_KEY": REDACTED, "session_token": REDACTED, "tokens": 5, "tokens_per_s": 2.0}
    assert back["config"]["url"] == "https://q.example" and back["config"]["api_key"] != FAKE_KEY


def test_redact_masks_names_and_literals_but_keeps_metrics():
    data = {"password": "p", "api-key": None, "nested": [{"auth_token": "x", "padding_tokens": 7}], "msg": "k=ABC"}
    assert redact(data, ["ABC", ""]) == {"password": REDACTED, "api-key": None,
                                         "nested": [{"auth_token": REDACTED, "padding_tokens": 7}],
                                         "msg": f"k={REDACTED}"}
    assert data["password"] == "p"  # a copy, the input is untouched


def test_sparse_and_odd_reports_still_render(tmp_path):
    odd = {"stage_wall_s": {"read": 1.5, "embed": "n/a"}, "throughput": {"t_s": [0, 10], "rows": [0, 50]},
           "vector": np.float32(0.5), "ids": np.arange(3), "decision": {"gate": "recall@10", "passed": False}}
    uris = write_run_report(str(tmp_path), "odd", odd)
    md = Path(uris["md"]).read_text()
    assert "## Exit decision" in md and "| passed | False |" in md and "| read | 1.5 |" in md
    assert json.loads(Path(uris["json"]).read_text())["ids"] == [0, 1, 2]
    empty = write_run_report(str(tmp_path), "empty", {})
    assert Path(empty["png"]).read_bytes().startswith(b"\x89PNG")
    assert render_markdown({}, "empty").startswith("# qbatch run `empty`")
    assert stage_seconds({"stages": {"a": 2, "b": {"seconds": 3}, "c": True}}) == {"a": 2.0, "b": 3.0}


@pytest.mark.parametrize("run_id", ["", "a/b", "..", "a\\b"])
def test_run_id_must_be_one_path_segment(tmp_path, run_id):
    with pytest.raises(ValueError, match="single path segment"):
        write_run_report(str(tmp_path), run_id, {})


def test_without_matplotlib_the_png_is_skipped_with_one_warning(tmp_path, monkeypatch, caplog):
    # None in sys.modules makes `import matplotlib...` raise ImportError, as on a host without it.
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)
    with caplog.at_level(logging.WARNING, logger="qbatch.report"):
        uris = write_run_report(str(tmp_path), "r1", REPORT, secrets=[FAKE_KEY])
    run_dir = tmp_path / "runs" / "r1"
    assert sorted(uris) == ["json", "md"]
    assert sorted(p.name for p in run_dir.iterdir()) == ["report.json", "report.md"]
    assert json.loads((run_dir / "report.json").read_text())["counts"] == REPORT["counts"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "report.png skipped: matplotlib is not installed" in warnings[0]


@pytest.mark.parametrize("samples", [[], [[27.7, 40]]])
def test_too_few_throughput_samples_say_so_instead_of_an_empty_axis(samples):
    """A short run lands in one batch: one sample draws no line, so the panel says why it is empty."""
    report = {"stages_seconds": {"startup (before the first embed batch)": 22.6, "embed": 2.5}, "throughput": samples}
    stages_axis, throughput_axis = report_figure(report).axes
    assert [t.get_text() for t in throughput_axis.texts] == [f"too few samples to plot throughput ({len(samples)})"]
    assert len(throughput_axis.lines) == 0 and not throughput_axis.axison
    assert len(stages_axis.patches) == 2  # the stage bars still draw
    assert render_png(report)[:8] == b"\x89PNG\r\n\x1a\n"


def test_enough_throughput_samples_draw_a_line_and_no_series_draws_no_panel():
    axes = report_figure({"stages_seconds": {"embed": 1.0}, "throughput": REPORT["throughput"]}).axes
    (line,) = axes[1].lines
    assert list(line.get_ydata()) == [0, 9000, 21000, 33000] and len(axes[1].texts) == 0
    assert len(report_figure({"stages": {"rerank": 3.0}}).axes) == 1  # a report without a series: one panel
