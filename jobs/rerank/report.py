"""What a `qbatch rerank` run leaves for people and machines, under `{output.uri}/_reports/run_date=D/`:
metrics.json + metrics.md (ranking quality before/after, or score and rank-change stats without labels)
and the run report (runs/{run_id}/report.json|md|png: counts, pairs/s, wall time, model, exit)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from qbatch.connectors.object_store import join_uri, write_bytes

_METRICS = ("ndcg@10", "mrr@10", "recall@10")


def reports_uri(output_uri: str, run_date: dt.date) -> str:
    return join_uri(output_uri, "_reports", f"run_date={run_date.isoformat()}")


def metrics_markdown(metrics: dict[str, Any], run_id: str, run_date: dt.date) -> str:
    lines = [f"# Rerank metrics, run `{run_id}`, run_date {run_date.isoformat()}", "",
             f"Queries scored: {metrics['queries']:,}; pairs scored: {metrics['scored_pairs']:,}.", ""]
    labelled = metrics.get("labelled")
    if labelled:
        lines += ["## Ranking quality (relevant = label > 0; before = orig_rank, after = new_rank)", "",
                  "| queries | bucket (candidates) | " + " | ".join(f"{m} before | {m} after" for m in _METRICS) + " |",
                  "|---:|---|" + "---:|" * (2 * len(_METRICS))]
        rows = [("overall", labelled["overall"]), *labelled["by_candidate_count"].items()]
        for name, m in rows:
            cells = " | ".join(f"{m['before'][k]:.4f} | {m['after'][k]:.4f}" for k in _METRICS)
            lines.append(f"| {m['queries']:,} | {name} | {cells} |")
        change = labelled["ndcg@10_change"]
        lines += ["", f"nDCG@10 per query: better {change['better']:,}, worse {change['worse']:,}, "
                      f"same {change['same']:,}.", ""]
    else:
        lines += ["No labels in the log: score distribution and rank changes only.", ""]
    dist = metrics.get("score_distribution")
    if dist:
        lines += ["## rerank_score distribution", "", "| min | p50 | p90 | max | mean |", "|---:|---:|---:|---:|---:|",
                  "| " + " | ".join(f"{dist[k]:.4f}" for k in ("min", "p50", "p90", "max", "mean")) + " |", "",
                  f"min, max and mean are exact; p50 and p90 come from a fixed 100-bin histogram and are within "
                  f"{dist.get('quantile_precision', 0.01):g} of the exact quantiles.", ""]
    change = metrics.get("rank_change") or {}
    fmt = lambda v, f: "n/a" if v is None else format(v, f)  # noqa: E731
    lines += ["## Rank changes", "", f"mean |new_rank - orig_rank|: {fmt(change.get('mean_abs_delta_rank'), '.3f')}; "
              f"share of queries whose top-1 changed: {fmt(change.get('top1_changed_share'), '.1%')}.", ""]
    return "\n".join(lines)


def write_metrics(output_uri: str, run_date: dt.date, run_id: str, metrics: dict[str, Any], storage=None) -> dict[str, str]:
    base = reports_uri(output_uri, run_date)
    uris = {"json": join_uri(base, "metrics.json"), "md": join_uri(base, "metrics.md")}
    doc = {"run_id": run_id, "run_date": run_date.isoformat(), **metrics}
    write_bytes(uris["json"], json.dumps(doc, indent=2, sort_keys=True).encode(), storage)
    write_bytes(uris["md"], metrics_markdown(metrics, run_id, run_date).encode(), storage)
    return uris


def write_report(output_uri: str, run_date: dt.date, run_id: str, report: dict[str, Any], storage,
                 secrets: list[str]) -> dict[str, str]:
    from qbatch.connectors.run_report_writer import write_run_report

    return write_run_report(reports_uri(output_uri, run_date), run_id, report, storage, secrets=secrets)
