"""The run report: what one job run read, rejected, embedded and wrote, and how long each stage took,
as report.json (for machines), report.md (for people) and report.png (a glance), under
{root}/runs/{run_id}/ (the index job's root is {output_uri}/{alias}) on local disk or object storage. Secrets never reach any of the three.
Without matplotlib the PNG is skipped with one warning; the JSON and Markdown are the record."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
from pathlib import PurePath
from typing import Any

from pydantic import BaseModel, SecretStr

from qbatch.connectors.object_store import join_uri, write_bytes
from qbatch.connectors.source_config import ObjectStoreOptions

log = logging.getLogger("qbatch.report")

REDACTED = "<redacted>"
# "token" only as a whole last word: `tokens`, `tokens_per_s` and `padding_tokens` are metrics, not secrets.
_SECRET_KEY = re.compile(r"api[_-]?key|secret|password|passwd|credential|authorization|(^|[_-])token$", re.I)
_DECISION_KEYS = ("exit", "exit_decision", "decision", "status")
_STAGE_KEYS = ("stages", "stages_seconds", "stage_wall_s")
# A line needs two points; with fewer the throughput panel says so instead of drawing an empty axis.
MIN_THROUGHPUT_SAMPLES = 2
_HEADLINE_KEYS = ("job", "collection", "alias", "model", "model_revision", "started_at", "finished_at", "wall_s")


def redact(obj: Any, secrets: list[str] | None = None) -> Any:
    """A copy of obj with secret-named keys masked and every literal secret string replaced."""
    literal = [s for s in (secrets or []) if s]

    def scrub(text: str) -> str:
        for s in literal:
            text = text.replace(s, REDACTED)
        return text

    def walk(o: Any) -> Any:
        if isinstance(o, SecretStr):
            return REDACTED
        if isinstance(o, dict):
            return {scrub(str(k)): REDACTED if _SECRET_KEY.search(str(k)) and o[k] is not None else walk(o[k])
                    for k in o}
        if isinstance(o, (list, tuple)):
            return [walk(v) for v in o]
        if isinstance(o, str):
            return scrub(o)
        return o

    return walk(obj)


def _jsonable(o: Any) -> Any:
    if isinstance(o, BaseModel):
        return o.model_dump(mode="json")  # SecretStr fields dump as ********
    if hasattr(o, "item") and callable(o.item) and getattr(o, "ndim", 0) == 0:
        return o.item()  # numpy scalars
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, (dt.datetime, dt.date)):
        return o.isoformat()
    if isinstance(o, PurePath):
        return str(o)
    return str(o)


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"
    if isinstance(v, (list, tuple)) and len(v) > 8:
        return f"[{len(v)} items]"
    return str(v).replace("|", "\\|").replace("\n", " ")


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for k, v in d.items():
        if isinstance(v, dict) and v:
            rows += _flatten(v, f"{prefix}{k}.")
        else:
            rows.append((f"{prefix}{k}", v))
    return rows


def _cell(key: str, v: Any) -> str:
    if isinstance(v, float) and 0.0 <= v <= 1.0 and key.endswith(("efficiency", "ratio", "share", "rate")):
        return f"{v:.1%}"
    return _fmt(v)


def _table(d: dict[str, Any]) -> list[str]:
    lines = ["| field | value |", "|---|---:|"]
    lines += [f"| {_fmt(k)} | {_cell(k, v)} |" for k, v in _flatten(d)]
    return lines + [""]


def stage_seconds(report: dict[str, Any]) -> dict[str, float]:
    """Wall seconds per stage from the first of _STAGE_KEYS present: {name: s} or {name: {wall_s: s}}."""
    stages = next((report[k] for k in _STAGE_KEYS if k in report), None) or {}
    out: dict[str, float] = {}
    if isinstance(stages, dict):
        for name, v in stages.items():
            s = v.get("wall_s", v.get("seconds")) if isinstance(v, dict) else v
            if isinstance(s, (int, float)) and not isinstance(s, bool):
                out[str(name)] = float(s)
    return out


def throughput_series(report: dict[str, Any]) -> tuple[list[float], list[float]]:
    """(t_seconds, rows_done) from `throughput` as [[t, rows], ...] or {t_s: [...], rows: [...]}."""
    tp = report.get("throughput")
    try:
        if isinstance(tp, dict):
            tp = list(zip(tp.get("t_s", tp.get("t", [])), tp.get("rows", tp.get("rows_done", []))))
        pairs = [(float(t), float(r)) for t, r in (tp or [])]
    except (TypeError, ValueError):
        return [], []
    return [t for t, _ in pairs], [r for _, r in pairs]


def render_markdown(report: dict[str, Any], run_id: str) -> str:
    """A readable summary of whatever the report holds; known sections first, the rest as tables."""
    lines = [f"# qbatch run `{run_id}`", ""]
    shown = {"run_id", "throughput", *_STAGE_KEYS}
    for key in _DECISION_KEYS:
        if key in report:
            decision = report[key]
            if isinstance(decision, dict):
                lines += ["## Exit decision", ""] + _table(decision)
            else:
                lines += [f"**Exit decision:** {_fmt(decision)}", ""]
            shown.add(key)
            break
    headline = {k: report[k] for k in _HEADLINE_KEYS if k in report and not isinstance(report[k], dict)}
    if headline:
        lines += ["## Run", ""] + _table(headline)
        shown |= set(headline)
    for section, title in (("counts", "Counts"), ("tokens", "Tokens"), ("gates", "Gates")):
        if isinstance(report.get(section), dict):
            lines += [f"## {title}", ""] + _table(report[section])
            shown.add(section)
    stages = stage_seconds(report)
    if stages:
        # No share column: reports list overlapping entries (per stage and total wall), shares would lie.
        lines += ["## Wall time per stage", "", "| stage | seconds |", "|---|---:|"]
        lines += [f"| {_fmt(k)} | {v:,.1f} |" for k, v in stages.items()] + [""]
    ts, rows = throughput_series(report)
    if ts:
        lines += [f"Throughput: {len(ts)} samples, {rows[-1]:,.0f} rows at {ts[-1]:,.1f} s.", ""]
    rest = {k: v for k, v in report.items() if k not in shown}
    for key, value in rest.items():
        if isinstance(value, dict) and value:
            lines += [f"## {_fmt(key).replace('_', ' ').capitalize()}", ""] + _table(value)
    scalars = {k: v for k, v in rest.items() if not (isinstance(v, dict) and v)}
    if scalars:
        lines += ["## Other", ""] + _table(scalars)
    return "\n".join(lines)


def report_figure(report: dict[str, Any]):
    """The report's matplotlib Figure: stage wall-time bars and, when the report has a throughput
    series, rows done over time; None without matplotlib."""
    # Figure + Agg canvas, not pyplot: no global state, no display backend, safe in worker threads.
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None

    stages = stage_seconds(report)
    ts, rows = throughput_series(report)
    has_series = "throughput" in report
    fig = Figure(figsize=(9 if has_series else 5, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 if has_series else 1, squeeze=False)[0]
    if stages:
        axes[0].barh(list(stages), list(stages.values()), color="#4C72B0")
        axes[0].invert_yaxis()
        axes[0].set_xlabel("wall seconds")
    else:
        axes[0].text(0.5, 0.5, "no stage timings recorded", ha="center", va="center")
        axes[0].set_axis_off()
    axes[0].set_title("time per stage")
    if len(ts) >= MIN_THROUGHPUT_SAMPLES:
        axes[1].plot(ts, rows, color="#DD8452")
        axes[1].set_xlabel("seconds since start")
        axes[1].set_ylabel("rows done")
    elif has_series:  # one sample (a short run lands in one batch) draws nothing: say so instead
        axes[1].text(0.5, 0.5, f"too few samples to plot throughput ({len(ts)})", ha="center", va="center")
        axes[1].set_axis_off()
    if has_series:
        axes[1].set_title("throughput")
    fig.tight_layout()
    return fig


def render_png(report: dict[str, Any]) -> bytes | None:
    """`report_figure` as PNG bytes; None without matplotlib."""
    fig = report_figure(report)
    if fig is None:
        return None
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def write_run_report(output_uri: str, run_id: str, report: dict[str, Any],
                     storage: ObjectStoreOptions | None = None, secrets: list[str] | None = None) -> dict[str, str]:
    """Write report.json, report.md and report.png under {root}/runs/{run_id}/; returns the URIs
    written (no "png" when matplotlib is missing)."""
    if not run_id or "/" in run_id or "\\" in run_id or run_id in (".", ".."):
        raise ValueError(f"run_id {run_id!r} must be a single path segment")
    # To plain JSON first, so objects that only become strings on the way out are redacted too.
    plain = json.loads(json.dumps(report, default=_jsonable))
    clean = redact(plain, secrets)
    base = join_uri(output_uri, "runs", run_id)
    uris = {name: join_uri(base, f"report.{name}") for name in ("json", "md", "png")}
    # JSON first: it is the record of truth; the Markdown and PNG are views of it.
    text = json.dumps(clean, indent=2, sort_keys=True, ensure_ascii=False)
    write_bytes(uris["json"], text.encode("utf-8"), storage)
    write_bytes(uris["md"], render_markdown(clean, run_id).encode("utf-8"), storage)
    png = render_png(clean)
    if png is None:
        log.warning("report.png skipped: matplotlib is not installed (pip install matplotlib); "
                    "report.json and report.md are complete")
        del uris["png"]
    else:
        write_bytes(uris["png"], png, storage)
    return uris
