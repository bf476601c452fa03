"""How many rows corpus files hold, without reading them through (for `qbatch index --dry-run`).

Parquet: the row count in the file's footer, exact, and no data page is read. JSONL and CSV: a
sample from the head of the file, whose rows and bytes are measured on the same stretch, so that
the rate scales to the file's size; a sample that reaches the end of the file is an exact count.
Rows are what a run reads, rejects included: a JSONL row is a non-blank line, a CSV row a record
after the header (quoted newlines included, an unparseable record counted too). A compressed file's
size on disk is compressed, so its sample is measured in compressed bytes: those the decompressor
had consumed when it last asked for more input, against the rows parsed by then.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from qbatch.connectors.corpus_listing import CorpusFile, compression_from_name
from qbatch.connectors.object_store import filesystem_for, storage_error
from qbatch.connectors.source_config import ObjectStoreOptions

_READ = 8 << 10  # small reads keep the compressed-byte marks close to the rows parsed
MAX_SAMPLE_BYTES = 8 << 20  # a plain file's head: at most this much, however few rows it holds
MIN_COMPRESSED_BYTES = 1 << 20  # a compressed head: at least this much input (16 decompressor reads)
MAX_DECOMPRESSED_BYTES = 64 << 20


def parquet_row_count(file: CorpusFile, storage: ObjectStoreOptions | None = None) -> int:
    """Rows of a Parquet file, from its footer."""
    fs, path = filesystem_for(file.uri, storage)
    try:
        with fs.open_input_file(path) as f:
            return pq.ParquetFile(f).metadata.num_rows
    except (OSError, pa.ArrowException) as e:
        raise storage_error("read the Parquet footer of", file.uri, e, storage) from None


@dataclass(frozen=True)
class TextSample:
    """`rows` rows in `data_bytes` bytes after a `header_bytes` header (CSV); bytes are compressed
    bytes for a compressed file. `whole_file`: the sample read the file to its end."""

    rows: int
    data_bytes: int
    header_bytes: int = 0
    whole_file: bool = False

    def rows_for(self, size: int) -> int:
        """The rows a file of `size` bytes holds at this sample's rate; exact for a whole-file sample."""
        if self.whole_file:
            return self.rows
        return round(self.rows * max(size - self.header_bytes, 0) / self.data_bytes) if self.data_bytes else 0

    @staticmethod
    def pooled(samples: Iterable["TextSample"]) -> "TextSample":
        """One rate from several samples of files alike (same format and compression)."""
        samples = list(samples)
        header = round(sum(s.header_bytes for s in samples) / len(samples)) if samples else 0
        return TextSample(sum(s.rows for s in samples), sum(s.data_bytes for s in samples), header)


class _Head:
    """Lines from the head of a file. As the file object under a decompressor, it also records the
    compressed bytes consumed and the rows counted when the decompressor last asked for input."""

    def __init__(self, raw: Any, codec: str | None):
        self._raw = raw
        self.rows = 0
        self.consumed = 0  # compressed bytes read
        self.mark = (0, 0)  # (compressed bytes, rows) at the decompressor's last read
        self.line_bytes = 0  # bytes of the lines handed out (decompressed), terminators included
        self.at_end = False
        self.closed = False
        self._source = pa.CompressedInputStream(self, codec) if codec else raw

    def read(self, n: int = -1) -> bytes:  # called by the decompressor only
        self.mark = (self.consumed, self.rows)
        data = self._raw.read(n)
        self.consumed += len(data)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True

    def lines(self) -> Iterator[bytes]:
        pending: list[bytes] = []  # a line longer than one read: joined once, not re-copied
        while chunk := self._source.read(_READ):
            pieces = chunk.split(b"\n")
            if len(pieces) == 1:
                pending.append(chunk)
                continue
            for line in (b"".join([*pending, pieces[0]]), *pieces[1:-1]):
                self.line_bytes += len(line) + 1
                yield line
            pending = [pieces[-1]] if pieces[-1] else []
        self.at_end = True
        if pending:
            line = b"".join(pending)
            self.line_bytes += len(line)
            yield line


def _count_jsonl(head: _Head, done) -> int:
    for line in head.lines():
        if line.strip(b" \t\r\n\xef\xbb\xbf"):  # blank lines (and a lone byte-order mark) are not rows
            head.rows += 1
            if done():
                break
    return 0


def _count_csv(head: _Head, done) -> int:
    """Counts the records after the header; returns the header's bytes."""
    text = (line.decode("utf-8", "surrogateescape") + "\n" for line in head.lines())
    reader = csv.reader(text, strict=True)  # pulls lines only as a record needs them
    try:
        next(reader)
    except (StopIteration, csv.Error):
        return head.line_bytes
    header_bytes = head.line_bytes
    while not done():
        try:
            if not next(reader):
                continue  # a blank line
        except StopIteration:
            break
        except csv.Error:
            pass  # an unparseable record is still a row the run reads (and rejects)
        head.rows += 1
    return header_bytes


def sample_text_rows(file: CorpusFile, storage: ObjectStoreOptions | None = None,
                     max_rows: int = 1000) -> TextSample:
    """The rows and bytes of a JSONL or CSV file's head: `max_rows` rows at most (more for a
    compressed file, to read MIN_COMPRESSED_BYTES), the whole file when it is shorter."""
    codec = compression_from_name(file.uri)
    fs, path = filesystem_for(file.uri, storage)
    try:
        with fs.open_input_stream(path, compression=None) as raw:
            head = _Head(raw, codec)
            if codec:
                def done() -> bool:
                    return (head.rows >= max_rows and head.consumed >= MIN_COMPRESSED_BYTES) \
                        or head.line_bytes >= MAX_DECOMPRESSED_BYTES
            else:
                def done() -> bool:
                    return head.rows >= max_rows or head.line_bytes >= MAX_SAMPLE_BYTES
            header = (_count_csv if file.format == "csv" else _count_jsonl)(head, done)
    except (OSError, pa.ArrowException, EOFError) as e:
        raise storage_error("read", file.uri, e, storage) from None
    if codec:
        if head.at_end or not head.mark[0]:
            return TextSample(head.rows, head.consumed, whole_file=head.at_end)
        return TextSample(head.mark[1], head.mark[0])
    whole = head.at_end or head.line_bytes >= file.size
    return TextSample(head.rows, head.line_bytes - header, header, whole_file=whole)
