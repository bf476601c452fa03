"""The driver's books: units are checkpointed by count, in whatever order their rows arrive."""

from __future__ import annotations

import json
import random

import pyarrow as pa
import pytest

from qbatch.common.end_of_file import EOF_STAGE, STATS_STAGE, UnitEnd
from qbatch.connectors.file_progress import FileProgressStore
from qbatch.connectors.qdrant_writer_stage import ACK_SCHEMA
from qbatch.jobs.index.ack_book import THROUGHPUT_SAMPLES, AckBook


def _doc(file, line, reason=None, chunk_lo=0, chunks_here=2):
    return {"_file": file, "_line": line, "doc_id": f"{file}-{line}", "n_chunks": 2, "chunk_lo": chunk_lo,
            "chunks_here": chunks_here, "content_hash": "c" * 64,
            "payload_hash": "p" * 64, "n_tokens": 10, "truncated": 0, "reject_reason": reason,
            "reject_stage": "prep" if reason else None, "reject_detail": None,
            "original_row": "{}" if reason else None}


def _end(file, unit, expected, units=None):
    return {"_file": file, "_line": 0, "reject_stage": EOF_STAGE, "reject_detail": UnitEnd(unit, expected, units).to_json()}


def _stats(**stats):
    return {"_line": 0, "reject_stage": STATS_STAGE, "reject_detail": json.dumps(stats)}


def test_units_finish_by_count_in_any_order(tmp_path):
    """Two files of two units of 3 records each, every row shuffled, markers included."""
    store = FileProgressStore(str(tmp_path), "r1")
    rows = [_doc(f, line, "empty_text" if line == 5 else None) for f in ("a", "b") for line in range(1, 7)]
    rows += [_end(f, 0, 3) for f in ("a", "b")] + [_end(f, 1, 3, units=2) for f in ("a", "b")]
    random.Random(3).shuffle(rows)
    book = AckBook(store, "r1", unit_rows=3)
    for start in range(0, len(rows), 5):
        book.consume(pa.Table.from_pylist(rows[start:start + 5] + [_stats(points_written=4, requests=1, retries=1,
                                                                           pid=7)], schema=ACK_SCHEMA))
    book.close()
    assert book.counters.units_done == 4
    done = store.done_files()
    assert done["a"] == done["b"] == {"read": 6, "docs_upserted": 5, "chunks": 10, "points_upserted": 10,
                                      "real_tokens": 50, "truncated": 0, "rejected": {"empty_text": 1}}
    assert sorted(pa.concat_tables(store.iter_manifest_rows())["doc_id"].to_pylist()) == sorted(
        f"{f}-{line}" for f in "ab" for line in range(1, 7) if line != 5)
    assert book.writer_stats()["retries"] == 4 and book.counters.writer_pids == {7}


def test_a_unit_missing_rows_is_never_checkpointed(tmp_path):
    store = FileProgressStore(str(tmp_path), "r1")
    book = AckBook(store, "r1", unit_rows=10)
    book.consume(pa.Table.from_pylist([_doc("a", 1), _end("a", 0, 2, units=1)], schema=ACK_SCHEMA))
    with pytest.raises(RuntimeError, match="never completed"):
        book.close()
    assert store.done_files() == {}
    late = AckBook(store, "r1", 10)  # more rows than the reader sent are never taken silently either
    with pytest.raises(RuntimeError, match="reader sent 1"):
        late.consume(pa.Table.from_pylist([_end("a", 0, 1, units=1), _doc("a", 1), _doc("a", 2)], schema=ACK_SCHEMA))


def test_a_document_acked_in_parts_counts_once_and_a_rejected_part_leaves_strays(tmp_path):
    store = FileProgressStore(str(tmp_path), "r1")
    book = AckBook(store, "r1", unit_rows=10)
    rows = [_doc("a", 1, chunk_lo=1, chunks_here=1), _doc("a", 2, chunk_lo=0, chunks_here=1), _end("a", 0, 2, units=1),
            _doc("a", 2, "non_finite_vector", chunk_lo=1, chunks_here=1), _doc("a", 1, chunk_lo=0, chunks_here=1)]
    for row in rows:
        book.consume(pa.Table.from_pylist([row], schema=ACK_SCHEMA))
    book.close()
    counts = store.done_files()["a"]
    assert counts["read"] == 2 and counts["docs_upserted"] == 1 and counts["points_upserted"] == 2
    assert counts["rejected"] == {"non_finite_vector": 1}
    assert book.strays == [("a-2", 0)]  # written before its other chunk was rejected: deleted after the pass


def test_bulk_columns_never_reach_the_driver(tmp_path):
    book = AckBook(FileProgressStore(str(tmp_path), "r1"), "r1", 10)
    with pytest.raises(RuntimeError, match="vector"):
        book.consume(pa.table({"_file": ["a"], "vector": [[0.1, 0.2]]}))


def test_the_throughput_sample_stays_bounded(tmp_path):
    book = AckBook(FileProgressStore(str(tmp_path), "r1"), "r1", 10**9)
    for _ in range(10 * THROUGHPUT_SAMPLES):
        book.consume(pa.Table.from_pylist([_stats()], schema=ACK_SCHEMA))
    assert THROUGHPUT_SAMPLES // 2 <= len(book.counters.throughput) < THROUGHPUT_SAMPLES
