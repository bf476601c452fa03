"""The driver's books take acknowledgement rows only, count each part once, and checkpoint each scored
unit as it arrives."""

from __future__ import annotations

import pyarrow as pa
import pytest

from qbatch.connectors.rerank_staging import RerankStaging
from qbatch.jobs.rerank.ack_books import RerankBooks
from qbatch.pipeline.ranking_metrics import RunMetrics
from qbatch.pipeline.rerank_acks import ack_table


def test_books_refuse_anything_but_acknowledgements(tmp_path):
    books = RerankBooks(RerankStaging(str(tmp_path), "r"))
    with pytest.raises(RuntimeError, match="not acknowledgement rows"):
        books.consume_score(pa.table({"unit": ["u"], "rerank_score": [0.5]}))


def test_prepare_and_score_acknowledgements_add_up(tmp_path):
    staging = RerankStaging(str(tmp_path), "r")
    books = RerankBooks(staging)
    books.consume_prepare(ack_table([
        {"phase": "prepare", "node_id": "n1", "pid": 1, "unit": "prep-a", "part": "prepared/prep-a.parquet",
         "part_kind": "prepared", "rows": 7, "queries": 2},
        {"phase": "prepare", "node_id": "n1", "pid": 1, "part": "dead_letter/prep-x.parquet", "part_kind": "dead_letter",
         "reason": "missing_document", "rows": 2},
        {"phase": "prepare", "node_id": "n2", "pid": 2, "queries": 3, "log_rows": 10, "candidates_read": 9}]))
    assert books.units == {"prep-a": (7, 2)} and books.prepare.counts["queries"] == 3
    assert books.prepare.reasons == {"missing_document": 2} and books.prepare.nodes == {"n1", "n2"}
    m = RunMetrics()
    m.add_query([1, 2], [2, 1], [0, 1], [0.2, 0.9], ["a", "b"])
    books.consume_score(ack_table([{"phase": "score", "node_id": "n2", "pid": 5, "unit": "prep-a",
                                    "part": "results/prep-a.parquet", "part_kind": "result", "rows": 7, "pairs": 7,
                                    "metrics": m.to_row()}]))
    assert books.done == {"prep-a": 7} and books.metrics.summary()["labelled"]["overall"]["queries"] == 1
    assert staging.read_json("units/prep-a.json")["rows"] == 7  # the unit's checkpoint
    restored = RerankBooks(staging)
    restored.restore_done(staging.read_json("units/prep-a.json"))
    assert restored.metrics.summary() == books.metrics.summary()
