"""The CPU stage between the reader and the embed actors: validate raw records, build texts, chunk
by tokens, tokenise, hash. A callable class for `ds.map_batches(PrepStage, fn_constructor_kwargs=...,
batch_format="pyarrow")`; the tokenizer loads once per actor in __init__.

Output schema (the contract with the embed stage and the driver), one row per chunk of every good
document and one row per rejected record, in input order in scan mode and otherwise in
`prep_row_order.length_order` (whole documents longest first, then rejects, then markers):

    doc_id          string        normalised id; null for rejects without a usable id
    chunk           int32         0-based chunk number (0 for rejects)
    n_chunks        int32         chunks of this document (0 for rejects)
    span_start      int64         chunk's character span [span_start, span_end) in the document text
    span_end        int64
    text            string        the chunk text, text[span_start:span_end]; null for rejects
    lang            string        language tag from columns.lang, or null
    content_hash    string        sha256 of the document's final text + model fingerprint + dim + instruction
                                  (the same on every chunk: it says whether the document must be re-embedded)
    payload_hash    string        sha256 of the payload's canonical JSON
    payload_json    string        JSON object of the payload columns; null for rejects
    token_ids       list<int32>   model input ids (template + end token, truncated); empty for rejects
    n_tokens        int32         len(token_ids)
    truncated       bool          the tokenizer cut the text at max_length (chunking off, or an odd chunk)
    _file           string        source file URI
    _line           int64         line (JSONL) or record number (CSV/Parquet) in that file
    reject_reason   string        null for good rows, else a RejectReason value
    reject_stage    string        null for good rows, "read" or "prep" for rejects
    reject_detail   string        human-readable detail for rejects
    reject_stage also takes "eof" on the end-of-unit marker row that closes each checkpoint unit (`_line` =
    records read so far, `reject_detail` = the marker's JSON, common/end_of_file.py; no text, no tokens),
    so the driver can checkpoint a finished unit.
    original_row    string        the JSON record (or the raw line if unreadable) on rejects and on chunk 0
                                  of good documents, so the driver can dead-letter a duplicate id whole
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from qbatch.common.end_of_file import END_OF_FILE, EOF_STAGE
from qbatch.common.row_validation import ColumnSpec, ValidatedRow, validate_raw_records
from qbatch.pipeline.content_hashing import canonical_json, content_hash, payload_hash
from qbatch.pipeline.prep_row_order import length_order
from qbatch.pipeline.token_chunking import chunk_spans


PREP_SCHEMA = pa.schema([
    ("doc_id", pa.string()),
    ("chunk", pa.int32()),
    ("n_chunks", pa.int32()),
    ("span_start", pa.int64()),
    ("span_end", pa.int64()),
    ("text", pa.string()),
    ("lang", pa.string()),
    ("content_hash", pa.string()),
    ("payload_hash", pa.string()),
    ("payload_json", pa.string()),
    ("token_ids", pa.list_(pa.int32())),
    ("n_tokens", pa.int32()),
    ("truncated", pa.bool_()),
    ("_file", pa.string()),
    ("_line", pa.int64()),
    ("reject_reason", pa.string()),
    ("reject_stage", pa.string()),
    ("reject_detail", pa.string()),
    ("original_row", pa.string()),
])


class DocTokenizer(Protocol):
    """What PrepStage needs from the embedder's tokenizer adapter."""

    max_length: int
    hf_tokenizer: Any

    def tokenize(self, texts: list[str]) -> list[list[int]]: ...


class PrepStage:
    """Raw-record table in, PREP_SCHEMA table out (see the module docstring)."""

    def __init__(self, columns_cfg_dict: Mapping[str, Any], chunking_cfg_dict: Mapping[str, Any],
                 tokenizer_factory: Callable[[], DocTokenizer], fingerprint: Mapping[str, Any],
                 dim: int | None, doc_instruction: str | None, scan_only: bool = False):
        # scan_only: one row per document with its hashes, no chunking or tokens (the diff pass of an
        # incremental run needs only what changed, not vectors).
        self._scan_only = scan_only
        self._columns = ColumnSpec.from_dict(columns_cfg_dict)
        self._chunking = bool(chunking_cfg_dict.get("enabled", False))
        self._overlap = int(chunking_cfg_dict.get("overlap", 64))
        if not scan_only:  # hashes need no tokenizer: the scan skips loading it (and transformers)
            self._init_tokenizer(tokenizer_factory, int(chunking_cfg_dict.get("max_tokens", 512)))
        self._fingerprint = canonical_json(dict(fingerprint))
        self._dim = dim
        self._instruction = doc_instruction
        # Test-only: QBATCH_TEST_SCAN_DELAY_S slows every batch of the hash-only scan, so a lock test can
        # make the scan outlast a short lock TTL. Never set in production.
        self._scan_delay = float(os.environ.get("QBATCH_TEST_SCAN_DELAY_S", "0") or 0) if scan_only else 0.0

    def _init_tokenizer(self, tokenizer_factory: Callable[[], DocTokenizer], max_tokens: int) -> None:
        self._tokenizer = tokenizer_factory()
        self._max_length = int(self._tokenizer.max_length)
        # Template and end-token ids every input carries; chunks leave room for them.
        self._overhead = len(self._tokenizer.tokenize([""])[0])
        self._chunk_tokens = min(max_tokens, self._max_length - self._overhead)
        if self._chunking and self._chunk_tokens <= self._overlap:
            raise ValueError(
                f"chunking leaves {self._chunk_tokens} tokens per chunk after {self._overhead} template/end "
                f"tokens, not more than overlap={self._overlap}; lower chunking.overlap or raise max_length")

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self._scan_delay:
            time.sleep(self._scan_delay)
        start = time.perf_counter()
        is_eof = pc.fill_null(pc.equal(batch.column("_read_error"), END_OF_FILE), False)
        markers = batch.filter(is_eof).to_pylist()
        rows = list(validate_raw_records(batch.filter(pc.invert(is_eof)), self._columns))
        out: dict[str, list[Any]] = {name: [] for name in PREP_SCHEMA.names}
        chunk_texts: list[str] = []
        for row in rows:
            if row.ok:
                chunk_texts.extend(self._add_document(out, row))
            else:
                self._add_reject(out, row)
        if not self._scan_only:
            self._add_tokens(out, chunk_texts)
        for marker in markers:  # a marker closes its unit, so it goes last
            self._add_end_of_unit(out, marker["_file"], marker["_line"], marker["_record"])
        table = pa.Table.from_pydict(out, schema=PREP_SCHEMA)
        if not self._scan_only:
            table = table.take(pa.array(length_order(out), pa.int64()))
        seconds = [time.perf_counter() - start] + [0.0] * (table.num_rows - 1)
        return table.append_column("_prep_seconds", pa.array(seconds[:table.num_rows], pa.float64()))

    @staticmethod
    def _add_end_of_unit(out: dict[str, list[Any]], file: str, records: int, unit_end: str | None) -> None:
        values = {name: None for name in PREP_SCHEMA.names}
        values.update({"chunk": 0, "n_chunks": 0, "span_start": 0, "span_end": 0, "token_ids": [], "n_tokens": 0,
                       "truncated": False, "_file": file, "_line": records, "reject_stage": EOF_STAGE,
                       "reject_detail": unit_end})
        for name, value in values.items():
            out[name].append(value)

    def _add_document(self, out: dict[str, list[Any]], row: ValidatedRow) -> list[str]:
        text = row.text or ""
        if self._scan_only:
            spans = [(0, len(text))]
        elif self._chunking:
            spans = chunk_spans(text, self._tokenizer.hf_tokenizer, self._chunk_tokens, self._overlap)
        else:
            spans = [(0, len(text))]
        payload_json = canonical_json(row.payload or {})
        p_hash = payload_hash(row.payload or {})
        c_hash = content_hash(text, self._fingerprint, self._dim, self._instruction)
        texts = []
        for i, (start, end) in enumerate(spans):
            chunk_text = text[start:end]
            texts.append(chunk_text)
            values = {
                "doc_id": row.doc_id, "chunk": i, "n_chunks": len(spans), "span_start": start,
                "span_end": end, "text": None if self._scan_only else chunk_text, "lang": row.lang,
                "content_hash": c_hash,
                "payload_hash": p_hash, "payload_json": payload_json,
                "token_ids": [], "n_tokens": 0, "truncated": False,  # filled in one tokenizer call
                "_file": row.file, "_line": row.line, "reject_reason": None, "reject_stage": None,
                "reject_detail": None, "original_row": row.original_row if i == 0 else None,
            }
            for name, value in values.items():
                out[name].append(value)
        return texts

    @staticmethod
    def _add_reject(out: dict[str, list[Any]], row: ValidatedRow) -> None:
        values = {
            "doc_id": row.doc_id, "chunk": 0, "n_chunks": 0, "span_start": 0, "span_end": 0,
            "text": None, "lang": None, "content_hash": None, "payload_hash": None, "payload_json": None,
            "token_ids": [], "n_tokens": 0, "truncated": False, "_file": row.file, "_line": row.line,
            "reject_reason": row.reason.value if row.reason else None, "reject_stage": row.stage,
            "reject_detail": row.detail, "original_row": row.original_row,
        }
        for name, value in values.items():
            out[name].append(value)

    def _add_tokens(self, out: dict[str, list[Any]], texts: list[str]) -> None:
        ids = self._tokenizer.tokenize(texts) if texts else []
        if len(ids) != len(texts):
            raise RuntimeError(f"tokenizer returned {len(ids)} sequences for {len(texts)} texts")
        good = (i for i, reason in enumerate(out["reject_reason"]) if reason is None)
        for i, token_ids, text in zip(good, ids, texts):
            out["token_ids"][i] = list(token_ids)
            out["n_tokens"][i] = len(token_ids)
            full = len(token_ids) >= self._max_length
            out["truncated"][i] = full and self._raw_length(text) + self._overhead > self._max_length

    def _raw_length(self, text: str) -> int:
        # Only asked for inputs that filled max_length, so the second tokenisation is rare.
        enc = self._tokenizer.hf_tokenizer(text, add_special_tokens=False, return_attention_mask=False,
                                           return_token_type_ids=False)
        return len(enc["input_ids"])


def scan_records(batch: pa.Table, columns_cfg_dict: Mapping[str, Any], chunking_cfg_dict: Mapping[str, Any],
                 fingerprint: Mapping[str, Any], dim: int | None, doc_instruction: str | None) -> pa.Table:
    """PrepStage in scan mode as a plain function, for Ray Data tasks: one row per record with its
    hashes, no tokenizer to load."""
    return PrepStage(columns_cfg_dict, chunking_cfg_dict, _no_tokenizer, fingerprint, dim, doc_instruction,
                     scan_only=True)(batch)


def _no_tokenizer() -> DocTokenizer:
    raise AssertionError("the scan needs no tokenizer")
