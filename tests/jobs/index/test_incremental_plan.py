"""An incremental run's plan is persisted before it writes: a resumed attempt runs exactly that plan even
when the source changed in between, refuses a planned file that changed, and a run refused before
writing dead-letters its duplicates and lets a retry plan afresh (local Ray, Qdrant local mode, the
tiny Qwen3 checkpoint, real text)."""

from __future__ import annotations

import json
import os

from qbatch.connectors.point_ids import point_id
from qbatch.jobs.runtime.exit_codes import ExitCode
from tests.jobs.index.index_fixtures import (all_points, catalog_rows, index_config, kill_after_writes, qdrant_at,
                                             read_report, run_cli, run_cli_subprocess, run_dir, start_index_run,
                                             write_corpus)


def _texts(tmp_path) -> dict[str, str]:
    with qdrant_at(tmp_path / "qdrant") as client:
        return {p["doc_id"]: p["text"] for _, p in all_points(client, "catalog").values()}


def test_a_resumed_run_does_what_its_plan_says_though_the_source_changed(tmp_path, tiny_embedding_checkpoint):
    rows = catalog_rows(60)
    write_corpus(tmp_path / "src", rows, n_files=6, formats=("jsonl",))
    cfg = index_config(tmp_path, str(tmp_path / "src"), tiny_embedding_checkpoint, run_id="build")
    assert run_cli(["index", "--config", cfg]) == ExitCode.OK
    v2 = [dict(r, description=r["description"] + " Back in stock.") for r in rows]  # 60 changed
    paths = write_corpus(tmp_path / "src", v2, n_files=6, formats=("jsonl",))
    nightly = ["--set", "run.mode=incremental", "--set", "embed.batch_size=4"]

    proc = start_index_run(cfg, "n1", {"QBATCH_TEST_EMBED_DELAY_S": "1.0"}, *nightly)
    kill_after_writes(proc, run_dir(tmp_path, "n1") / "files")
    plan = json.loads((run_dir(tmp_path, "n1") / "plan" / "PLAN.json").read_text())
    assert [f["uri"] for f in plan["files"]] == [str(p) for p in paths]

    # A planned file changed since: its record numbers no longer say what to embed. Refused, naming it.
    stat = paths[2].stat()
    paths[2].write_text(paths[2].read_text().replace("Back in stock.", "Sold out.."))
    changed = run_cli_subprocess(["index", "--config", cfg, "--set", "run.run_id=n1", *nightly])
    assert changed.returncode == ExitCode.SOURCE_ERROR, changed.stderr[-3000:]
    assert f"{paths[2]} changed" in changed.stderr and "new run" in changed.stderr
    paths[2].write_text(paths[2].read_text().replace("Sold out..", "Back in stock."))
    os.utime(paths[2], ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as planned again

    # A file added since is left for the next run; the plan's files are embedded exactly.
    late = [dict(r, id=f"late{i}") for i, r in enumerate(catalog_rows(5, seed=3))]
    (tmp_path / "src" / "part-999.jsonl").write_text("".join(json.dumps(r) + "\n" for r in late))
    resumed = run_cli_subprocess(["index", "--config", cfg, "--set", "run.run_id=n1", *nightly])
    assert resumed.returncode == ExitCode.OK, resumed.stderr[-3000:]
    report = read_report(tmp_path, "n1")
    assert report["plan"] == {"reused": True, "files": 6, "duplicates": 0}
    assert report["resume"]["attempt"] == 3 and report["diff"]["changed"] == 60
    assert report["counts"]["read"] == 60 and report["counts"]["rejected_total"] == 0
    texts = _texts(tmp_path)
    assert set(texts) == {r["id"] for r in rows}  # no late document
    assert all(t.endswith("Back in stock.") for t in texts.values())


def test_a_refused_run_dead_letters_its_duplicates_and_a_retry_plans_afresh(ray_session, tmp_path,
                                                                           tiny_embedding_checkpoint):
    from qbatch.connectors.dead_letter_writer import read_dead_letter

    rows = catalog_rows(40)
    write_corpus(tmp_path / "src", rows, n_files=2)
    cfg = index_config(tmp_path, str(tmp_path / "src"), tiny_embedding_checkpoint, run_id="build")
    assert run_cli(["index", "--config", cfg]) == ExitCode.OK
    # A broken export: the second file repeats ten ids of the first (25% of 40 rows > max_reject_ratio 1%).
    copies = [dict(r, title=f"copy of {r['id']}") for r in rows[:10]]
    paths = write_corpus(tmp_path / "src", rows[:20] + rows[20:] + copies, n_files=2)
    nightly = ["index", "--config", cfg, "--set", "run.mode=incremental", "--set", "run.run_id=n1"]
    assert run_cli(nightly) == ExitCode.REJECT_RATIO_EXCEEDED
    report = read_report(tmp_path, "n1")
    assert report["counts"]["rejected"] == {"duplicate_id": 10} and "refused before writing" in report["exit"]["reason"]
    dead = read_dead_letter(str(tmp_path / "out" / "catalog"), "n1")
    assert sorted(dead["doc_id"].to_pylist()) == sorted(r["id"] for r in copies)
    assert set(dead["reason"].to_pylist()) == {"duplicate_id"} and set(dead["file"].to_pylist()) == {str(paths[1])}
    assert {json.loads(o)["title"] for o in dead["original_row"].to_pylist()} == {r["title"] for r in copies}
    assert not (run_dir(tmp_path, "n1") / "plan" / "PLAN.json").exists()  # discarded: nothing was written

    # The export is fixed and the same scheduler run retried: it plans afresh and serves the change.
    fixed = [dict(r) for r in rows]
    fixed[3]["description"] += " Now with free shipping."
    write_corpus(tmp_path / "src", fixed, n_files=2)
    assert run_cli(nightly) == ExitCode.OK
    report = read_report(tmp_path, "n1")
    assert report["plan"]["reused"] is False and report["diff"]["changed"] == 1
    assert report["counts"]["rejected_total"] == 0 and read_dead_letter(str(tmp_path / "out" / "catalog"),
                                                                          "n1").num_rows == 0
    assert _texts(tmp_path)[fixed[3]["id"]].endswith("Now with free shipping.")
    with qdrant_at(tmp_path / "qdrant") as client:
        assert client.retrieve("catalog", [point_id(fixed[3]["id"], 0)])[0].payload["run_id"] == "n1"
