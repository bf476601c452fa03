"""Stream one corpus file as Arrow tables of raw records, the same schema for every format.

    _file        string  the file's URI
    _line        int64   1-based line number (JSONL) or record number (CSV data rows, Parquet rows)
    _record      string  the row as a JSON object text; null when the row could not be read
    _raw         string  the undecodable/unparseable line, bad bytes replaced (JSONL/CSV rejects only)
    _read_error  string  null, or why the row could not be read: see READ_ERRORS

A bad line never stops the file: it becomes one row with `_read_error` set, so the driver can count
it and write it to the dead-letter table. A file that cannot be opened at all is a SourceError.
Memory stays flat: JSONL and CSV are read through a stream, Parquet by record batch.
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import decimal
import io
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from qbatch.common.end_of_file import END_OF_FILE, UnitEnd
from qbatch.common.errors import SourceError
from qbatch.connectors.corpus_listing import CorpusFile
from qbatch.connectors.object_store import filesystem_for, storage_error
from qbatch.connectors.source_config import ObjectStoreOptions

# The reject reasons a reader can assign; pipeline/row_validation.RejectReason holds them all.
BROKEN_JSON = "broken_json"
BAD_UTF8 = "bad_utf8"
NOT_AN_OBJECT = "not_an_object"
CSV_PARSE_ERROR = "csv_parse_error"
READ_ERRORS = (BROKEN_JSON, BAD_UTF8, NOT_AN_OBJECT, CSV_PARSE_ERROR)

RAW_SCHEMA = pa.schema([
    pa.field("_file", pa.string(), nullable=False),
    pa.field("_line", pa.int64(), nullable=False),
    pa.field("_record", pa.string()),
    pa.field("_raw", pa.string()),
    pa.field("_read_error", pa.string()),
])

_READ_CHUNK = 1 << 20
# A document may be one very long CSV field; the csv module's default cap is 128 KiB.
csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))

Row = tuple[int, str | None, str | None, str | None]  # (_line, _record, _raw, _read_error)


def iter_record_batches(file: CorpusFile, storage: ObjectStoreOptions | None = None,
                        batch_rows: int = 2048, columns: Sequence[str] | None = None,
                        skip_lines: Sequence[tuple[int, int]] = ()) -> Iterator[pa.Table]:
    """Tables of at most `batch_rows` raw records in file order. `columns` limits Parquet reads.
    `skip_lines` (inclusive 1-based record ranges) lets a Parquet reader leave out whole row groups that
    lie inside them (their records may be left out; other formats are read through)."""
    fs, path = filesystem_for(file.uri, storage)
    try:
        if file.format == "parquet":
            with fs.open_input_file(path) as f:
                yield from _batched(file.uri, _parquet_rows(f, batch_rows, columns, skip_lines), batch_rows)
        elif file.format == "jsonl":
            with fs.open_input_stream(path, compression="detect") as f:
                yield from _batched(file.uri, _jsonl_rows(f), batch_rows)
        elif file.format == "csv":
            with fs.open_input_stream(path, compression="detect") as f:
                yield from _batched(file.uri, _csv_rows(f, file.uri), batch_rows)
        else:
            raise SourceError(f"unsupported format {file.format!r} for {file.uri}")
    except SourceError:
        raise
    except (OSError, pa.ArrowException, EOFError) as e:
        # A damaged or unreachable file is not a row-level reject: the operator must look at it.
        raise storage_error("read", file.uri, e, storage) from None


def end_of_unit_row(uri: str, records: int, end: UnitEnd) -> pa.Table:
    """The marker row that closes one checkpoint unit (common/end_of_file.py); `records` read so far."""
    return _to_table(uri, [(records, end.to_json(), None, END_OF_FILE)])


def _batched(uri: str, rows: Iterable[Row], batch_rows: int) -> Iterator[pa.Table]:
    buf: list[Row] = []
    for row in rows:
        buf.append(row)
        if len(buf) >= batch_rows:
            yield _to_table(uri, buf)
            buf = []
    if buf:
        yield _to_table(uri, buf)


def _to_table(uri: str, rows: list[Row]) -> pa.Table:
    lines, records, raws, errors = zip(*rows)
    return pa.Table.from_arrays(
        [pa.array([uri] * len(rows), pa.string()), pa.array(lines, pa.int64()),
         pa.array(records, pa.string()), pa.array(raws, pa.string()), pa.array(errors, pa.string())],
        schema=RAW_SCHEMA,
    )


# --- JSONL -------------------------------------------------------------------------------------

def _iter_lines(stream: Any) -> Iterator[bytes]:
    """Lines of a byte stream without their terminator; one chunk plus one line in memory."""
    pending: list[bytes] = []  # pieces of a line longer than one chunk; joined once, not re-copied
    while chunk := stream.read(_READ_CHUNK):
        pieces = chunk.split(b"\n")
        if len(pieces) == 1:
            pending.append(chunk)
            continue
        pending.append(pieces[0])
        yield b"".join(pending)
        yield from pieces[1:-1]
        pending = [pieces[-1]] if pieces[-1] else []
    if pending:
        yield b"".join(pending)


def _jsonl_rows(stream: Any) -> Iterator[Row]:
    for number, line in enumerate(_iter_lines(stream), start=1):
        if number == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]  # a UTF-8 byte-order mark, as some Windows tools write
        line = line.rstrip(b"\r")
        if not line.strip():
            continue  # blank lines (often a trailing one) are not records
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            yield number, None, line.decode("utf-8", errors="replace"), BAD_UTF8
            continue
        try:
            value = json.loads(text)
        except ValueError:
            yield number, None, text, BROKEN_JSON
            continue
        if not isinstance(value, dict):
            yield number, None, text, NOT_AN_OBJECT
            continue
        yield number, text, None, None


# --- CSV ---------------------------------------------------------------------------------------

class _LineTap:
    """Feeds the csv reader line by line and remembers the physical lines of the current record."""

    def __init__(self, text: io.TextIOBase):
        self._text = text
        self.consumed: list[str] = []

    def __iter__(self) -> "_LineTap":
        return self

    def __next__(self) -> str:
        line = self._text.readline()
        if not line:
            raise StopIteration
        self.consumed.append(line)
        return line

    def take(self) -> str:
        raw = "".join(self.consumed)
        self.consumed = []
        return raw.rstrip("\r\n")


def _has_surrogates(s: str) -> bool:
    try:
        s.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def _printable(raw: str) -> str:
    # surrogateescape smuggled the bad bytes in as lone surrogates; show them as U+FFFD instead.
    return raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _csv_rows(stream: Any, uri: str) -> Iterator[Row]:
    # surrogateescape keeps bad bytes inside their own row, so one bad row never stops the file.
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    tap = _LineTap(text)
    reader = csv.reader(tap, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as e:
        raise SourceError(f"cannot parse the CSV header of {uri}: {e}") from None
    tap.take()
    if any(_has_surrogates(h) for h in header):
        raise SourceError(f"the CSV header of {uri} is not valid UTF-8")
    number = 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error:
            number += 1
            yield number, None, _printable(tap.take()), CSV_PARSE_ERROR
            continue
        raw = tap.take()
        if not fields:
            continue  # a blank line
        number += 1
        if len(fields) != len(header):
            yield number, None, _printable(raw), CSV_PARSE_ERROR
        elif any(_has_surrogates(f) for f in fields):
            yield number, None, _printable(raw), BAD_UTF8
        else:
            yield number, json.dumps(dict(zip(header, fields)), ensure_ascii=False), None, None


# --- Parquet -----------------------------------------------------------------------------------

def _parquet_rows(f: Any, batch_rows: int, columns: Sequence[str] | None,
                  skip_lines: Sequence[tuple[int, int]] = ()) -> Iterator[Row]:
    pf = pq.ParquetFile(f)
    wanted = None
    if columns is not None:
        names = set(pf.schema_arrow.names)
        wanted = [c for c in dict.fromkeys(columns) if c in names]
    number = 0
    for group in range(pf.num_row_groups):
        rows = pf.metadata.row_group(group).num_rows
        if any(lo <= number + 1 and number + rows <= hi for lo, hi in skip_lines):
            number += rows  # every record of this row group is in a range the caller skips: not even read
            continue
        for batch in pf.iter_batches(batch_size=batch_rows, row_groups=[group], columns=wanted):
            for row in batch.to_pylist():
                number += 1
                yield number, json.dumps(to_jsonable(row), ensure_ascii=False, allow_nan=False), None, None


def to_jsonable(value: Any) -> Any:
    """A Parquet/Arrow Python value as plain JSON: bytes as text (or base64), times as ISO 8601,
    decimals as strings, NaN/inf as null, map entries as [key, value] pairs."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(raw).decode("ascii")
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return str(value)  # numpy scalars, pandas objects and anything else pyarrow may hand back


