"""The commit of a rerank run into Iceberg (output.format = iceberg): the dead letters as files, as for
Parquet; then one overwrite snapshot of the results table for the run date (its data files out, the
run's acknowledged files in, the run id in the summary); then the date's row of the metrics table;
then snapshot expiry (output.catalog.keep_snapshots). The results commit first: a run killed between the
two commits is rerun with the same run id, finds its snapshot (by run id and prepare token) and only
completes the metrics row and the report, without scoring again.

Test-only fault injection, never set in production (labelled FAULT INJECTION):
QBATCH_TEST_ICEBERG_KILL="before-commit:FLAG" or "after-commit:FLAG" SIGKILLs the driver just before the
catalog commit or just after it (before the metrics row and the report), if FLAG exists (deleted first)."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal

log = logging.getLogger("qbatch.rerank")
_KILL_ENV = "QBATCH_TEST_ICEBERG_KILL"


def _fault(point: str) -> None:
    value = os.environ.get(_KILL_ENV)
    if value and value.split(":", 1)[0] == point and os.path.exists(value.split(":", 1)[1]):
        os.remove(value.split(":", 1)[1])
        log.warning("FAULT INJECTION: killing the driver %s", point)
        os.kill(os.getpid(), signal.SIGKILL)


def metrics_row(run, books, snapshot_id: int) -> dict:
    summary = books.metrics.summary()
    overall = (summary.get("labelled") or {}).get("overall") or {}
    row = {"run_date": run.run_date, "run_id": run.run_id, "results_snapshot_id": snapshot_id,
           "queries": summary["queries"], "scored_pairs": summary["scored_pairs"],
           "labelled_queries": overall.get("queries", 0),
           "committed_at": dt.datetime.now(dt.timezone.utc)}
    for metric in ("ndcg@10", "mrr@10", "recall@10"):
        for side in ("before", "after"):
            row[f"{metric.replace('@', '_at_')}_{side}"] = (overall.get(side) or {}).get(metric)
    return row


def commit_iceberg(run, books, dead_letters: list[str], results) -> tuple[str, str]:
    from qbatch.connectors.iceberg_tables import PendingFiles
    from qbatch.connectors.rerank_table import publish_dead_letters

    cfg, iceberg, figures = run.cfg, run.iceberg, run.table_figures
    where = publish_dead_letters(cfg.output.uri, run.run_date, run.run_id, run.prepared_token, run.staging,
                                 dead_letters, run.storage)
    files = [results.uri(results.name(u)) for u in sorted(books.done)]
    snapshot = iceberg.committed_snapshot(run.run_id, run.prepared_token)
    figures["commit_finished_by_an_earlier_attempt"] = snapshot is not None
    if snapshot is None:
        _fault("before-commit")
        snapshot = iceberg.commit_day(run.run_date, files, run.run_id, run.prepared_token)
        _fault("after-commit")
    iceberg.commit_metrics(metrics_row(run, books, snapshot))
    figures.update(table=iceberg.name, snapshot_id=snapshot, data_files=len(files),
                   previous_snapshot_id=iceberg.results.metadata.snapshot_by_id(snapshot).parent_snapshot_id,
                   metrics_table=f"{iceberg.cfg.namespace}.{iceberg.cfg.metrics_table}",
                   snapshots_expired=iceberg.expire(iceberg.cfg.keep_snapshots))
    PendingFiles(cfg.output.uri, run.run_date, run.storage).drop(run.prepared_token)
    run.staging.delete_all()
    log.info("committed %d data files of run_date %s to %s as snapshot %d", len(files), run.run_date,
             iceberg.name, snapshot)
    return f"{iceberg.name} snapshot {snapshot}", where
