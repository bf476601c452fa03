"""iter_record_batches: one raw-record schema for JSONL, CSV and Parquet, bad rows kept as rejects."""

from __future__ import annotations

import datetime as dt
import decimal
import gzip
import json
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qbatch.common.errors import SourceError
from qbatch.connectors.corpus_file_reader import RAW_SCHEMA, READ_ERRORS, iter_record_batches
from qbatch.connectors.corpus_listing import CorpusFile, list_corpus_files
from qbatch.connectors.source_config import SourceConfig
from qbatch.common.row_validation import RejectReason


def _file(path, fmt) -> CorpusFile:
    return CorpusFile(uri=str(path), path=path.name, size=path.stat().st_size, format=fmt)


def _rows(file, storage=None, **kw) -> list[dict]:
    tables = list(iter_record_batches(file, storage, **kw))
    assert all(t.schema.equals(RAW_SCHEMA) for t in tables)
    return [r for t in tables for r in t.to_pylist()]


def test_read_errors_are_reject_reasons():
    assert set(READ_ERRORS) <= {r.value for r in RejectReason}


def test_jsonl_keeps_reading_past_bad_lines(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": 1}\r\n\n{"id": \n[1, 2]\n{"t": "caf\xe9"}\n{"id": "\\u00e9"}')
    rows = _rows(_file(path, "jsonl"))
    assert [(r["_line"], r["_read_error"]) for r in rows] == [
        (1, None), (3, "broken_json"), (4, "not_an_object"), (5, "bad_utf8"), (6, None)]
    assert rows[0]["_record"] == '{"id": 1}' and rows[0]["_raw"] is None
    assert rows[1]["_record"] is None and rows[1]["_raw"] == '{"id": '
    assert rows[3]["_raw"] == '{"t": "caf\ufffd"}'
    assert json.loads(rows[4]["_record"]) == {"id": "é"}
    assert {r["_file"] for r in rows} == {str(path)}


def test_jsonl_gzip_and_batches(tmp_path):
    path = tmp_path / "a.jsonl.gz"
    path.write_bytes(gzip.compress(b"".join(b'{"id": %d}\n' % i for i in range(1, 26))))
    tables = list(iter_record_batches(_file(path, "jsonl"), batch_rows=10))
    assert [t.num_rows for t in tables] == [10, 10, 5]
    assert pa.concat_tables(tables).column("_line").to_pylist() == list(range(1, 26))


def test_csv_quoting_newlines_and_bad_rows(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(
        b'id,text\n'
        b'1,"multi\nline, with ""quotes"""\n'
        b'2,only,too,many\n'
        b'3,caf\xe9\n'
        b'\n'
        b'4,plain\n'
        b'5,"x"y\n'
        b'6,fine\n')
    rows = _rows(_file(path, "csv"))
    assert [(r["_line"], r["_read_error"]) for r in rows] == [
        (1, None), (2, "csv_parse_error"), (3, "bad_utf8"), (4, None), (5, "csv_parse_error"), (6, None)]
    assert json.loads(rows[0]["_record"]) == {"id": "1", "text": 'multi\nline, with "quotes"'}
    assert rows[1]["_raw"] == "2,only,too,many"
    assert rows[2]["_raw"] == "3,caf\ufffd"
    assert json.loads(rows[5]["_record"]) == {"id": "6", "text": "fine"}


def test_csv_unterminated_quote_rejects_the_tail(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text('id,text\n1,ok\n2,"never closed\n3,lost\n')
    rows = _rows(_file(path, "csv"))
    assert [(r["_line"], r["_read_error"]) for r in rows] == [(1, None), (2, "csv_parse_error")]
    assert rows[1]["_raw"] == '2,"never closed\n3,lost'


def test_parquet_values_become_json(tmp_path):
    table = pa.table({
        "id": pa.array([1, 2], pa.int64()),
        "blob": pa.array([b"text", b"\xff\x00"], pa.binary()),
        "ts": pa.array([dt.datetime(2026, 11, 28, 12, 30), None], pa.timestamp("us")),
        "day": pa.array([dt.date(2026, 1, 2), None], pa.date32()),
        "price": pa.array([decimal.Decimal("1.50"), None], pa.decimal128(5, 2)),
        "score": pa.array([float("nan"), 2.5], pa.float64()),
        "tags": pa.array([["a", "b"], []], pa.list_(pa.string())),
        "meta": pa.array([{"k": 1}, None], pa.struct([("k", pa.int32())])),
    })
    path = tmp_path / "a.parquet"
    pq.write_table(table, path, row_group_size=1)
    rows = _rows(_file(path, "parquet"))
    assert [r["_line"] for r in rows] == [1, 2]
    assert [r["_read_error"] for r in rows] == [None, None]
    first, second = (json.loads(r["_record"]) for r in rows)
    assert first == {"id": 1, "blob": "text", "ts": "2026-11-28T12:30:00", "day": "2026-01-02",
                     "price": "1.50", "score": None, "tags": ["a", "b"], "meta": {"k": 1}}
    assert second["blob"] == "/wA=" and second["ts"] is None and second["score"] == 2.5


def test_parquet_column_projection(tmp_path):
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"id": [1], "text": ["t"], "huge": ["x" * 1000]}), path)
    rows = _rows(_file(path, "parquet"), columns=["id", "text", "absent"])
    assert json.loads(rows[0]["_record"]) == {"id": 1, "text": "t"}


def test_corrupt_parquet_is_a_source_error_naming_the_file(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(SourceError, match="bad.parquet"):
        _rows(_file(path, "parquet"))


def test_jsonl_memory_stays_flat(tmp_path):
    path = tmp_path / "big.jsonl"
    line = json.dumps({"id": 0, "text": "w" * 1000}).encode() + b"\n"
    path.write_bytes(line * 20_000)  # ~20 MB
    tracemalloc.start()
    try:
        rows = 0
        for table in iter_record_batches(_file(path, "jsonl"), batch_rows=500):
            rows += table.num_rows
            del table
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows == 20_000
    assert peak < 8 * 2**20, f"peak Python allocations {peak / 2**20:.1f} MiB for a 20 MiB file"


def test_reads_parquet_and_jsonl_from_s3(s3_client, s3_bucket, s3_storage):
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"id": ["p1", "p2"], "text": ["a", "b"]}), sink)
    s3_client.put_object(Bucket=s3_bucket, Key="c/a.parquet", Body=sink.getvalue().to_pybytes())
    s3_client.put_object(Bucket=s3_bucket, Key="c/b.jsonl", Body=b'{"id": "j1", "text": "c"}\n{oops\n')
    files = list_corpus_files(SourceConfig(uri=f"s3://{s3_bucket}/c", storage=s3_storage))
    rows = [r for f in files for r in _rows(f, s3_storage)]
    assert [(r["_file"].rsplit("/", 1)[-1], r["_line"], r["_read_error"]) for r in rows] == [
        ("a.parquet", 1, None), ("a.parquet", 2, None), ("b.jsonl", 1, None), ("b.jsonl", 2, "broken_json")]
    assert json.loads(rows[2]["_record"]) == {"id": "j1", "text": "c"}


def test_jsonl_lines_across_read_chunks(tmp_path, monkeypatch):
    import qbatch.connectors.corpus_file_reader as reader

    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"id": 1, "text": "%s"}\n{"id": 2}\n\n{"id": 3}' % (b"y" * 50))
    expected = _rows(_file(path, "jsonl"))
    monkeypatch.setattr(reader, "_READ_CHUNK", 7)  # every line now spans several reads
    assert _rows(_file(path, "jsonl")) == expected
    assert [r["_line"] for r in expected] == [1, 2, 4]
