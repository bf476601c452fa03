"""The index run report: one dict written as JSON, Markdown and a PNG (connectors/run_report_writer),
and a short summary printed at the end of a run."""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO


log = logging.getLogger("qbatch.index")


def build_report(run, wall_s: float) -> dict:
    load = run.report.get("load")
    plan = run.report.get("plan")
    book = load.book if load is not None else None
    totals = dict(load.totals) if load is not None else {}
    rejected = dict(load.rejected) if load is not None else {}
    read = totals.get("read", 0)
    if plan is not None:  # incremental: the scan read everything; the load pass only what changed
        read = plan.read
        for reason, n in plan.rejected.items():
            rejected[reason] = rejected.get(reason, 0) + n
        if load is None and plan.duplicates:  # refused before the load pass, which counts them as it reads
            rejected["duplicate_id"] = rejected.get("duplicate_id", 0) + plan.duplicates
    sc = book.counters if book is not None else None
    pipeline_s = max(load.seconds if load is not None else wall_s, 1e-9)
    real = totals.get("real_tokens", 0)
    real_now = sc.totals.get("real_tokens", 0) if sc else 0  # this attempt; a resume skips done files
    computed = sc.computed_tokens if sc else 0
    ray_s = run.report.get("ray_start_s", 0.0)
    # What the run paid before its first vector: from its start until the first embed call began (Ray
    # start, the plan's scan, actor processes, tokenizer and model loads, the first block read and
    # prepared). The embed actors report Unix times: on a cluster, as exact as the nodes' clocks agree.
    first_embed = sc.first_embed_at if sc else None
    startup = round(max(0.0, first_embed - run.started_at), 3) if first_embed else None
    actors = round(max(0.0, first_embed - load.started_at), 3) if first_embed and load else None
    scan_s = run.report.get("scan_s")
    report = {
        "job": "index", "run_id": run.run_id, "mode": run.mode, "alias": run.alias, "collection": run.collection,
        "previous_live": run.live,
        "model": {"name": run.spec.fingerprint.get("model"), "revision": run.spec.fingerprint.get("model_revision"),
                  "dim": run.spec.dim, "distance": run.spec.distance,
                  # The dtype the embed actors ran in, for information (README, "Precision").
                  "precision": ", ".join(sorted(sc.precisions)) if sc and sc.precisions else None},
        "source": {"uri": run.cfg.source.uri, "files": len(run.files), "bytes": sum(f.size for f in run.files)},
        "counts": {
            "read": read, "rejected_total": sum(rejected.values()), "rejected": dict(sorted(rejected.items())),
            "docs_upserted": totals.get("docs_upserted", 0), "chunks": totals.get("chunks", 0),
            "embedded": totals.get("chunks", 0), "points_upserted": totals.get("points_upserted", 0),
            "truncated": totals.get("truncated", 0),
        },
        "tokens": {
            "real": real, "real_this_attempt": real_now, "computed_this_attempt": computed,
            "padding_efficiency": round(real_now / computed, 4) if computed else None,
            "tokens_per_s": round(real_now / pipeline_s, 1),
            "docs_per_s": round((sc.totals.get("read", 0) if sc else 0) / pipeline_s, 1),
            "micro_batches": sc.micro_batches if sc else 0,
        },
        "resume": {
            "attempt": run.state_store.load().attempts if run.state_store else 1,
            "files_total": load.files_total if load else 0,
            "files_done_by_earlier_attempts": load.files_skipped_done if load else 0,
            "files_in_flight_at_crash": load.files_resumed if load else 0,
            "units_done_by_earlier_attempts": load.units_skipped_done if load else 0,
            "units_in_flight_at_crash": load.units_in_flight_at_crash if load else 0,
            "checkpoint_rows": run.cfg.run.checkpoint_rows,
            # Rows of the units a crash left in flight: the failed attempt embedded and lost them, this one redid them.
            "docs_redone": load.docs_redone if load else 0,
            "docs_this_attempt": load.docs_this_attempt if load else 0,
            "docs_total": totals.get("read", 0),
            "redone_ratio": round(load.docs_redone / totals["read"], 4) if load and totals.get("read") else 0.0,
        },
        "stages_seconds": {
            "startup (before the first embed batch)": startup,
            "ray start (part of startup)": round(ray_s, 3),
            "plan scan (part of startup)": round(scan_s, 3) if scan_s is not None else None,
            "actors, models, first block (part of startup)": actors,
            "first acknowledgement (from the load pass start)":
                round(load.first_batch_s, 3) if load is not None and load.first_batch_s is not None else None,
            "prep (sum over actors)": round(sc.prep_seconds, 3) if sc else 0.0,
            "embed (sum over actors)": round(sc.embed_seconds, 3) if sc else 0.0,
            "qdrant write (sum over writer actors)": round(sc.write_seconds, 3) if sc else 0.0,
            "checkpoints (driver)": round(sc.checkpoint_seconds, 3) if sc else 0.0,
            "bookkeeping total (driver)": round(sc.sink_seconds, 3) if sc else 0.0,
            "load pass wall": round(pipeline_s, 3) if load else 0.0,
            "total wall": round(wall_s, 3),
        },
        # This attempt's requests to Qdrant, summed from the writer actors' acknowledgements: points
        # acknowledged, write requests, retries, duplicate ids collapsed within a request, and an in-place
        # run's reads of before-images for its undo log.
        "writer": {**book.writer_stats(), "actors": len(sc.writer_pids), "pids": sorted(sc.writer_pids),
                   "driver_pid": os.getpid(),
                   "ack_bytes_per_doc": round(sc.ack_bytes / max(1, sc.totals.get("read", 0)), 1)}
        if book is not None else None,
        "pools": run.pools.describe() if run.pools else None,
        "gates": run.report.get("gates", []),
        "throughput": sc.throughput if sc else [],
    }
    planned = plan if plan is not None else run.report.get("duplicate_plan")
    if planned is not None:  # what this run embeds was decided by this plan, made by the first attempt
        report["plan"] = {"reused": planned.reused, "files": len(planned.files), "duplicates": planned.duplicates}
    if plan is not None:
        # Point counts are unknown before chunking; the plan speaks in documents.
        report["diff"] = {k: v for k, v in plan.summary.as_dict().items() if not k.startswith("points_")}
    if "incremental" in run.report:
        report["incremental"] = run.report["incremental"]
    if run.report.get("settings_applied"):
        report["settings_applied"] = run.report["settings_applied"]
    if "undo" in run.report:
        report["undo"] = run.report["undo"]
    if "dropped_collections" in run.report:
        report["dropped_collections"] = run.report["dropped_collections"]
    return report


def decide_exit(run, report: dict, error: BaseException | None) -> None:
    """The exit decision: a refusal (gate or reject ratio, raised before the alias or the live index
    changed) or ok."""
    from qbatch.jobs.runtime.exit_codes import exit_code_for

    counts = report["counts"]
    ratio = counts["rejected_total"] / counts["read"] if counts["read"] else 0.0
    if error is not None:
        code = exit_code_for(error)
        report["exit"] = {"code": int(code), "status": code.name.lower(), "reason": str(error)}
    else:
        report["exit"] = {"code": 0, "status": "ok", "reason": f"reject ratio {ratio:.2%}"}


def finish_report(run, error: BaseException | None, wall_s: float) -> dict:
    from qbatch.connectors.run_report_writer import write_run_report

    report = build_report(run, wall_s)
    decide_exit(run, report, error)
    uris = write_run_report(run.run_root, run.run_id, report, run.storage)
    log.info("report written: %s", ", ".join(uris.values()))
    print_summary(report, sys.stdout)
    return report


def print_summary(report: dict, out: TextIO) -> None:
    c, t = report["counts"], report["tokens"]
    rej = ", ".join(f"{k}={v}" for k, v in c["rejected"].items()) or "none"
    out.write(
        f"run {report['run_id']} ({report['mode']}) -> {report['alias']} = {report['collection']}: read {c['read']}, "
        f"upserted {c['docs_upserted']} docs ({c['points_upserted']} points), rejected {c['rejected_total']} ({rej})\n"
        f"tokens {t['real']} at {t['tokens_per_s']}/s, padding efficiency {t['padding_efficiency']}, "
        f"wall {report['stages_seconds']['total wall']}s; exit: {report['exit']['status']}\n")
