"""A finished run's report as Prometheus gauges, pushed to a Pushgateway under job + run_id. Best
effort: a push that fails is logged and never changes the run's exit code."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

from qbatch.jobs.runtime.logging_setup import scrub

log = logging.getLogger("qbatch.metrics")

PUSH_TIMEOUT_S = 10.0  # a slow gateway must not hold a finished job for long

# (metric, labels, value); labels is a tuple of (name, value) pairs.
Sample = tuple[str, tuple[tuple[str, str], ...], float]

HELP = {
    "qbatch_rows_read": "input rows read (index: documents; rerank: query-log rows)",
    "qbatch_rows_rejected": "rows rejected or dead-lettered, by reason",
    "qbatch_docs_upserted": "documents upserted into Qdrant (index)",
    "qbatch_rows_written": "rows written to the output table (rerank)",
    "qbatch_tokens": "real (non-padding) tokens embedded",
    "qbatch_tokens_per_second": "real tokens per second of the load pass",
    "qbatch_pairs_per_second": "query-document pairs scored per second (rerank)",
    "qbatch_duration_seconds": "wall time of the run",
    "qbatch_gate_passed": "1 when the validation gate passed, 0 when it failed",
    "qbatch_success": "1 when the run exited 0",
    "qbatch_exit_code": "process exit code of the run (jobs/runtime/exit_codes.py)",
}


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def report_samples(report: dict) -> Iterator[Sample]:
    """Every figure the report holds; a figure the report lacks is left out rather than pushed as 0."""
    counts = report.get("counts") or {}
    if report.get("job") == "rerank":  # jobs/rerank/run_phases.py
        figures = {"qbatch_rows_read": counts.get("log_rows_read"), "qbatch_rows_written": counts.get("rows_written"),
                   "qbatch_pairs_per_second": report.get("pairs_per_s"), "qbatch_duration_seconds": report.get("wall_s")}
        rejected = report.get("dead_letter_by_reason") or {}
    else:  # jobs/index/report.py
        tokens = report.get("tokens") or {}
        figures = {"qbatch_rows_read": counts.get("read"), "qbatch_docs_upserted": counts.get("docs_upserted"),
                   "qbatch_tokens": tokens.get("real"), "qbatch_tokens_per_second": tokens.get("tokens_per_s"),
                   "qbatch_duration_seconds": (report.get("stages_seconds") or {}).get("total wall")}
        rejected = counts.get("rejected") or {}
    for name, value in figures.items():
        if _number(value) is not None:
            yield name, (), _number(value)
    for reason, n in sorted(rejected.items()):
        if _number(n) is not None:
            yield "qbatch_rows_rejected", (("reason", str(reason)),), _number(n)
    for gate in report.get("gates") or []:
        if isinstance(gate, dict) and "gate" in gate and "passed" in gate:
            yield "qbatch_gate_passed", (("gate", str(gate["gate"])),), 1.0 if gate["passed"] else 0.0
    code = _number((report.get("exit") or {}).get("code"))
    if code is not None:
        yield "qbatch_success", (), 1.0 if code == 0 else 0.0
        yield "qbatch_exit_code", (), code


def push_run_metrics(gateway_url: str, job: str, report: dict, secrets: Sequence[str] = ()) -> None:
    """Push the report's figures to `gateway_url` as `job`, grouped by run_id; failures only warn."""
    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

    def clean(text: str) -> str:
        text = scrub(text)
        for s in secrets:
            if s:
                text = text.replace(s, "***")
        return text

    registry = CollectorRegistry()
    gauges: dict[str, Gauge] = {}
    for name, labels, value in report_samples(report):
        if name not in gauges:
            gauges[name] = Gauge(name, HELP[name], [k for k, _ in labels], registry=registry)
        gauge = gauges[name]
        (gauge.labels(*(clean(v) for _, v in labels)) if labels else gauge).set(value)
    run_id = clean(str(report.get("run_id", "unknown")))
    try:
        push_to_gateway(gateway_url, job=job, grouping_key={"run_id": run_id}, registry=registry,
                        timeout=PUSH_TIMEOUT_S)
    except Exception as e:  # noqa: BLE001 - metrics are best effort: any failure only warns
        log.warning("metrics push to %s failed (the run's exit code is unchanged): %s: %s",
                    clean(gateway_url), type(e).__name__, clean(str(e)))
    else:
        log.info("metrics pushed to %s as job %s, run_id %s", clean(gateway_url), job, run_id)
