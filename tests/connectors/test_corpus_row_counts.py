"""Row counts without reading files through: Parquet footers are exact; a JSONL/CSV head sample
measures rows and bytes on the same stretch (checked against the file's own bytes), is exact when it
reads the whole file (checked against what the corpus reader yields), and scales to within 10%
otherwise. Rows are shuffled with a seed, so a file's head is like its body: the estimate's premise."""

from __future__ import annotations

import csv
import gzip
import io
import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qbatch.common.errors import SourceError
from qbatch.connectors.corpus_file_reader import iter_record_batches
from qbatch.connectors.corpus_listing import CorpusFile
from qbatch.connectors.corpus_row_counts import MIN_COMPRESSED_BYTES, parquet_row_count, sample_text_rows
from tests.fixtures.stdlib_docstrings import stdlib_docstring_pairs

TOLERANCE = 0.10


def docs(n: int, seed: int = 0) -> list[dict]:
    pairs = stdlib_docstring_pairs(limit=5000)
    rng = random.Random(seed)
    return [{"id": f"d{i}", "title": p["query"], "body": p["document"]}
            for i, p in enumerate(rng.choice(pairs) for _ in range(n))]


def _file(path, fmt) -> CorpusFile:
    return CorpusFile(uri=str(path), path=path.name, size=path.stat().st_size, format=fmt)


def _csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)  # docstring bodies hold newlines: quoted multi-line records
    return buf.getvalue()


def _reader_rows(file: CorpusFile) -> int:
    return sum(t.num_rows for t in iter_record_batches(file))


def test_parquet_rows_come_from_the_footer(tmp_path):
    for n, group in [(1, 1), (2500, 1000), (3000, 64)]:
        path = tmp_path / f"p{n}.parquet"
        pq.write_table(pa.Table.from_pylist(docs(n)), path, row_group_size=group)
        assert parquet_row_count(_file(path, "parquet")) == n


def test_a_damaged_parquet_file_names_itself(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(SourceError, match="broken.parquet"):
        parquet_row_count(_file(path, "parquet"))


def test_a_short_file_is_read_whole_and_counted_as_the_reader_counts(tmp_path):
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_bytes(b'\xef\xbb\xbf{"id": 1}\r\n\n{"id": \n[1, 2]\n  \n{"id": 3}')  # BOM, blanks, broken lines
    bad_csv = tmp_path / "b.csv"
    bad_csv.write_text(_csv_text(docs(40)) + '\n"unterminated,x\n', encoding="utf-8")
    for path, fmt in [(jsonl, "jsonl"), (bad_csv, "csv")]:
        file = _file(path, fmt)
        sample = sample_text_rows(file, max_rows=1000)
        assert sample.whole_file and sample.rows == _reader_rows(file) == sample.rows_for(file.size)
    assert sample_text_rows(_file(jsonl, "jsonl")).rows == 4


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_long_file_scales_rows_and_bytes_of_the_same_head(tmp_path, fmt):
    rows = docs(6000, seed=1)
    path = tmp_path / f"big.{fmt}"
    text = _csv_text(rows) if fmt == "csv" else "".join(json.dumps(r) + "\n" for r in rows)
    path.write_text(text, encoding="utf-8")
    file = _file(path, fmt)
    sample = sample_text_rows(file, max_rows=1000)
    assert not sample.whole_file and sample.rows == 1000
    if fmt == "csv":
        header = _csv_text(rows[:1]).split("\r\n", 1)[0] + "\r\n"
        head = _csv_text(rows[:1000]).encode()
        assert sample.header_bytes == len(header) and sample.data_bytes == len(head) - len(header)
    else:
        assert sample.data_bytes == len("".join(json.dumps(r) + "\n" for r in rows[:1000]).encode())
    assert abs(sample.rows_for(file.size) - 6000) <= TOLERANCE * 6000


def test_compressed_files_scale_by_compressed_bytes(tmp_path):
    small = tmp_path / "small.jsonl.gz"
    small.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in docs(300)).encode()))
    sample = sample_text_rows(_file(small, "jsonl"))
    assert sample.whole_file and sample.rows == 300 and sample.data_bytes == small.stat().st_size

    n = 40_000  # several MiB compressed, so the head is a fraction of the file
    big = tmp_path / "big.jsonl.gz"
    big.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in docs(n, seed=2)).encode()))
    assert big.stat().st_size > 2 * MIN_COMPRESSED_BYTES
    sample = sample_text_rows(_file(big, "jsonl"), max_rows=1000)
    assert not sample.whole_file and MIN_COMPRESSED_BYTES * 0.9 <= sample.data_bytes < big.stat().st_size
    assert abs(sample.rows_for(big.stat().st_size) - n) <= TOLERANCE * n
