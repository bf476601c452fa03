"""Checks a freshly built collection must pass before the alias may point at it. Pure: the job measures
(counts, search results) and these functions judge, so each verdict is testable with plain numbers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from qbatch.common.errors import ConfigError

# Recall figures are means of fractions; without slack 0.8 - 0.7 > 0.1 would fail a max_drop of 0.1.
_EPS = 1e-9


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict, the figures it judged, and a sentence an operator can act on."""

    name: str
    passed: bool
    figures: dict[str, Any] = field(default_factory=dict)
    message: str = ""


def count_parity(points_in_collection: int, points_upserted: int, expected_points: int) -> GateResult:
    """Passes when the collection holds exactly the points the manifest says it should."""
    figures = {"points_in_collection": points_in_collection, "points_upserted": points_upserted,
               "expected_points": expected_points}
    if points_in_collection == expected_points:
        return GateResult("count_parity", True, figures, f"collection holds the expected {expected_points} points")
    gap = points_in_collection - expected_points
    what = f"{-gap} fewer" if gap < 0 else f"{gap} more"
    cause = (f"; this run upserted only {points_upserted}, so some batches never reached the collection"
             if points_upserted < expected_points and gap < 0 else "")
    return GateResult("count_parity", False, figures,
                      f"collection holds {points_in_collection} points, {what} than the expected "
                      f"{expected_points}{cause}")


def minimum_size(new_docs: int, live_docs: int | None, min_ratio: float) -> GateResult:
    """Passes when the new index keeps at least `min_ratio` of the live one's documents (or nothing is live)."""
    figures = {"new_docs": new_docs, "live_docs": live_docs, "min_ratio": min_ratio}
    if not live_docs:
        return GateResult("minimum_size", True, figures, "no live index to compare with")
    ratio = new_docs / live_docs
    figures["ratio"] = ratio
    if ratio + _EPS >= min_ratio:
        return GateResult("minimum_size", True, figures, f"{new_docs} documents, {ratio:.1%} of the live {live_docs}")
    return GateResult("minimum_size", False, figures,
                      f"new index has {new_docs} documents, {ratio:.1%} of the live {live_docs}, below "
                      f"min_ratio {min_ratio:.1%}; check the source is complete, or lower min_ratio")


def _distinct(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def golden_recall(results: Mapping[str, Sequence[str]], expected: Mapping[str, Sequence[str]], k: int) -> float:
    """Mean over the golden queries of |top-k distinct results ∩ expected| / |expected|. Results are
    de-duplicated first, since several chunks of one document may rank; a query with no results scores 0."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if not expected:
        raise ValueError("no golden queries to measure recall on")
    total = 0.0
    for query, relevant in expected.items():
        wanted = set(relevant)
        if not wanted:
            raise ValueError(f"golden query {query!r} expects no documents")
        top = set(_distinct(results.get(query, ()))[:k])
        total += len(top & wanted) / len(wanted)
    return total / len(expected)


def golden_gate(new_recall: float, live_recall: float | None, threshold: float, max_drop: float) -> GateResult:
    """Passes when recall reaches `threshold` and, with a live index measured, drops at most `max_drop`."""
    figures = {"new_recall": new_recall, "live_recall": live_recall, "threshold": threshold, "max_drop": max_drop}
    failures = []
    if new_recall + _EPS < threshold:
        failures.append(f"recall {new_recall:.3f} is below the threshold {threshold:.3f}")
    if live_recall is not None and live_recall - new_recall > max_drop + _EPS:
        failures.append(f"recall fell from {live_recall:.3f} (live) to {new_recall:.3f}, more than "
                        f"max_drop {max_drop:.3f}")
    if failures:
        return GateResult("golden_recall", False, figures,
                          "; ".join(failures) + "; inspect the golden queries' results before switching")
    versus = f" (live {live_recall:.3f})" if live_recall is not None else ""
    return GateResult("golden_recall", True, figures, f"recall {new_recall:.3f}{versus}")


def load_golden_queries(lines: Iterable[str], source: str = "golden queries") -> dict[str, list[str]]:
    """query -> expected doc ids from JSONL rows {"query": str, "expected_doc_ids": [str, ...]}; blank
    lines are skipped; a bad row raises ConfigError naming `source` and its line number."""
    golden: dict[str, list[str]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source} line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: not valid JSON ({exc.msg})") from None
        query, ids = _golden_row(row, where)
        if query in golden:
            raise ConfigError(f"{where}: query {query!r} repeats an earlier line; merge their expected_doc_ids")
        golden[query] = ids
    if not golden:
        raise ConfigError(f"{source}: no golden queries found")
    return golden


def _golden_row(row: Any, where: str) -> tuple[str, list[str]]:
    if not isinstance(row, dict):
        raise ConfigError(f'{where}: expected an object like {{"query": ..., "expected_doc_ids": [...]}}')
    unknown = sorted(set(row) - {"query", "expected_doc_ids"})
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}")
    query, ids = row.get("query"), row.get("expected_doc_ids")
    if not isinstance(query, str) or not query.strip():
        raise ConfigError(f"{where}: 'query' must be a non-empty string, got {query!r}")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        raise ConfigError(f"{where}: 'expected_doc_ids' must be a non-empty list of doc id strings, got {ids!r}")
    return query, _distinct(ids)
