"""A `qbatch rerank` run after its checks: prepare (jobs/rerank/prepare_plan.py), the reject-ratio gate,
score (jobs/rerank/score_plan.py), the gate again with the scoring's rejects, commit, then metrics and
the run report. The driver plans, adds up acknowledgements (jobs/rerank/ack_books.py) and commits the
acknowledged parts; workers do everything else.

The gate runs before any GPU time is spent: a run over `run.max_reject_ratio` commits nothing, its dead
letters are published under `{output.uri}/_rejected/run_date=D/{run_id}/` (the error names it), and its
staging folder is discarded so that a retry prepares afresh. A committed run removes its staging folder:
the prepared parts hold raw queries and texts."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from qbatch.connectors.object_store import join_uri
from qbatch.jobs.runtime.exit_codes import ExitCode

log = logging.getLogger("qbatch.rerank")


@dataclass
class RerankRun:
    """What the phases of one run share."""

    cfg: Any
    run_id: str
    run_date: Any
    files: list
    corpus_files: list
    staging: Any  # qbatch.connectors.rerank_staging.RerankStaging
    redactor: Any
    fingerprint: dict
    model_name: str
    cpus: float = 1.0
    qdrant: Any = None  # qbatch.connectors.qdrant_candidates.QdrantCandidates, when Qdrant is needed
    retrieval: Any = None  # prepare_plan.RetrievalPlan, when retrieval is on
    prepared_token: str | None = None
    iceberg: Any = None  # qbatch.connectors.iceberg_tables.IcebergResults with output.format = iceberg
    heartbeat: Any = None
    stages: dict = field(default_factory=dict)
    table_figures: dict = field(default_factory=dict)  # what the Iceberg commit did: snapshots, files
    abandoned_runs: list = field(default_factory=list)  # run ids whose staging this run removed

    @property
    def storage(self):
        return self.cfg.output.storage or self.cfg.queries.storage

    def check_lock(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.check()


def gate(books, cfg, phase: str) -> dict[str, Any]:
    """The reject-ratio decision over what was read (and retrieved) so far."""
    counts = books.prepare.counts
    read = counts["candidates_read"] + counts["candidates_retrieved"]
    rejected = sum(books.prepare.reasons.values()) + sum(books.score.reasons.values())
    ratio = rejected / read if read else 0.0
    return {"over": ratio > cfg.run.max_reject_ratio, "read": read, "rejected": rejected, "ratio": ratio,
            "phase": phase}


def run_phases(run: RerankRun, args, secrets: list[str], started: float) -> dict:
    from qbatch.jobs.rerank.ack_books import RerankBooks
    from qbatch.jobs.rerank.prepare_plan import run_prepare
    from qbatch.jobs.rerank.score_plan import run_score
    from qbatch.jobs.runtime.actor_pool import plan_and_wait

    books = RerankBooks(run.staging)
    t = time.perf_counter()
    before = _cpus_available()
    prep = run_prepare(run, books)
    run.stages["prepare"] = time.perf_counter() - t
    decision = gate(books, run.cfg, "prepare")
    score: dict[str, Any] = {"resume": None}
    results = None
    if not decision["over"]:
        t = time.perf_counter()
        _wait_released(before)  # the prepare plan's tasks and actors give their CPUs back asynchronously
        pool = plan_and_wait("reranker", run.cfg.reranker)
        log.info("pool: %s", pool.describe())
        run.stages["reranker_pool_wait"] = time.perf_counter() - t
        results, constant = result_files(run, books)
        t = time.perf_counter()
        score = run_score(run, books, pool, results, constant)
        run.stages["score"] = time.perf_counter() - t
        decision = gate(books, run.cfg, "score")
    t = time.perf_counter()
    dead_letters = list(books.prepare.dead_letter_parts) + list(books.score.dead_letter_parts)
    if decision["over"]:
        committed, where = None, publish_rejected(run, dead_letters)
        if run.iceberg is not None and results is not None:  # written, never committed: removed by the next run
            run.table_figures["unreferenced_files"] = [results.uri(results.name(u)) for u in sorted(books.done)]
        run.staging.delete_all()  # a retry prepares afresh (the source may have been fixed)
    elif run.iceberg is not None:
        from qbatch.jobs.rerank.iceberg_commit import commit_iceberg

        committed, where = commit_iceberg(run, books, dead_letters, results)
    else:
        committed, where = commit(run, books, dead_letters, results)
    run.stages["commit"] = time.perf_counter() - t
    return build_report(run, books, prep, score, decision, committed, where, started, secrets)


def result_files(run: RerankRun, books) -> tuple[Any, dict | None]:
    """Where the scoring workers write result files, and the columns a table format adds to them. For
    Iceberg: below the table's location, with run_date; the date's ledger records them before scoring,
    after the files of runs that never committed were removed."""
    from qbatch.connectors.rerank_staging import ResultFiles

    if run.iceberg is None:
        return ResultFiles(run.staging.root, "results/", run.storage), None
    import pyarrow as pa

    from qbatch.connectors.iceberg_tables import PendingFiles

    results = ResultFiles(run.iceberg.data_base(run.run_id, run.prepared_token), "part-", run.storage)
    pending = PendingFiles(run.cfg.output.uri, run.run_date, run.storage)
    run.table_figures["orphans_removed"] = pending.clean(run.iceberg.committed_tokens(), run.prepared_token)
    pending.add(run.run_id, run.prepared_token, results.base, [results.name(u) for u in books.units])
    return results, {"run_date": (run.run_date, pa.date32())}


def _cpus_available() -> float:
    import ray

    return float(ray.available_resources().get("CPU", 0.0))


def _wait_released(before: float, timeout_s: float = 10.0) -> None:
    """Until the CPUs free before the prepare phase are free again (a few seconds at most): the reranker
    pool is sized from what is free, and must not be sized from the prepare plan's leftovers."""
    deadline = time.monotonic() + timeout_s
    while _cpus_available() < before and time.monotonic() < deadline:
        time.sleep(0.1)


def publish_rejected(run: RerankRun, dead_letters: list[str]) -> str:
    from qbatch.connectors.rerank_table import FolderSwap, DEAD_LETTER_MARKER

    where = join_uri(run.cfg.output.uri, "_rejected", f"run_date={run.run_date.isoformat()}", run.run_id)
    FolderSwap(where, run.staging, "publish-rejected", run.storage).publish(
        dead_letters, DEAD_LETTER_MARKER, {"run_id": run.run_id, "prepared": run.prepared_token})
    return where


def commit(run: RerankRun, books, dead_letters: list[str], results) -> tuple[str, str]:
    """The Parquet format's commit: the acknowledged result parts (staging names) become the day."""
    from qbatch.connectors.rerank_table import publish_dead_letters, publish_partition

    cfg = run.cfg
    parts = [results.name(u) for u in sorted(books.done)] if results is not None else []  # an empty day: none
    rows = sum(books.done.values())
    where = publish_dead_letters(cfg.output.uri, run.run_date, run.run_id, run.prepared_token, run.staging,
                                 dead_letters, run.storage)
    partition = publish_partition(cfg.output.uri, run.run_date, run.run_id, run.prepared_token, run.staging,
                                  parts, rows, run.storage)
    run.staging.delete_all()
    return partition, where


def build_report(run: RerankRun, books, prep: dict, score: dict, decision: dict, committed: str | None,
                 dead_letter_uri: str, started: float, secrets: list[str]) -> dict:
    from qbatch.jobs.rerank.report import write_metrics, write_report
    from qbatch.pipeline.rerank_stage import instruction_sha

    cfg = run.cfg
    storage = run.storage
    over = decision["over"]
    reasons = books.prepare.reasons + books.score.reasons
    exit_decision = {"code": int(ExitCode.REJECT_RATIO_EXCEEDED if over else ExitCode.OK),
                     "reason": (f"{decision['rejected']} of {decision['read']} candidates dead-lettered "
                                f"({decision['ratio']:.2%}) > run.max_reject_ratio {cfg.run.max_reject_ratio:.2%} "
                                f"after {decision['phase']}; nothing committed, dead letters at {dead_letter_uri}")
                     if over else "ok", "reject_ratio": decision["ratio"]}
    metrics = books.metrics.summary()
    metric_uris = write_metrics(cfg.output.uri, run.run_date, run.run_id, metrics, storage)
    wall = time.perf_counter() - started
    counts = books.prepare.counts
    units = len(books.units)
    pairs = books.pairs
    scored = int(books.metrics.v["scored_pairs"])
    report = {
        "job": "rerank", "run_id": run.run_id, "run_date": run.run_date.isoformat(), "model": run.model_name,
        # For information: fp32 and bf16 scores differ by rounding only (README, "Precision").
        "precision": ", ".join(sorted(books.precisions)) or None,
        "instruction_sha": instruction_sha(cfg.reranker.instruction), "exit": exit_decision,
        "counts": {"log_rows_read": counts["log_rows"], "candidates_read": counts["candidates_read"],
                   "queries": counts["queries"], "queries_retrieved": counts["queries_retrieved"],
                   "candidates_retrieved": counts["candidates_retrieved"], "candidates_to_score": pairs,
                   "scored_pairs": scored, "rows_written": sum(books.done.values()) if committed else 0,
                   "dead_lettered": sum(reasons.values()), "non_finite": books.score.counts["non_finite"],
                   "truncated_pairs": books.score.counts["truncated"]},
        "dead_letter_by_reason": dict(sorted(reasons.items())), "dead_letters": dead_letter_uri,
        "pairs_per_s": (sum(books.done.values()) / run.stages["score"]) if run.stages.get("score") else 0.0,
        "stages": dict(run.stages), "wall_s": wall, "partition": committed or "(not committed)",
        "metrics": metric_uris["json"],
        "plan": {"units": units, "pairs_per_part": cfg.run.pairs_per_part, "prepare_partitions": prep.get("partitions"),
                 "prepare_skipped": prep.get("skipped", False), "documents": cfg.documents.source,
                 "retrieval": run.retrieval is not None,
                 "qdrant_requests": {"search": counts["search_requests"], "lookup": counts["lookup_requests"]}},
        "resume": score.get("resume"), "format": cfg.output.format,
        **({"iceberg": dict(run.table_figures)} if run.iceberg is not None else {}),
        "abandoned_runs_removed": run.abandoned_runs,
        "workers": {"prepare_nodes": sorted(books.prepare.nodes), "score_nodes": sorted(books.score.nodes),
                    "score_pids": sorted(books.score.pids), "prepare_worker_s": books.prepare.worker_seconds,
                    "score_worker_s": books.score.worker_seconds},
        "driver": {"ack_batches": books.prepare.ack_batches + books.score.ack_batches,
                   "ack_rows": books.prepare.ack_rows + books.score.ack_rows,
                   "ack_bytes": {"prepare": books.prepare.ack_bytes, "score": books.score.ack_bytes},
                   "ack_bytes_per_unit": {"prepare": books.ack_bytes_per_unit(books.prepare, units),
                                          "score": books.ack_bytes_per_unit(books.score, score.get(
                                              "units_this_attempt") or 0)},
                   "books_seconds": books.prepare.driver_seconds + books.score.driver_seconds,
                   "first_unit_s": books.first_unit_s},
    }
    uris = write_report(cfg.output.uri, run.run_date, run.run_id, report, storage, secrets)
    log.info("report written: %s", uris["json"])
    print(f"rerank {run.run_id} ({run.run_date.isoformat()}): {counts['queries']} queries, {scored} pairs scored "
          f"in {units} units, {sum(reasons.values())} dead-lettered, {report['pairs_per_s']:.1f} pairs/s, "
          f"wall {wall:.1f}s; exit: {exit_decision['reason'] if over else 'ok'}")
    return report
