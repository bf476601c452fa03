"""row_validation: id normalisation, text building, payloads and reject reasons."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from qbatch.connectors.corpus_file_reader import RAW_SCHEMA
from qbatch.jobs.index.config import ColumnsConfig
from qbatch.common.row_validation import ColumnSpec, RejectReason, validate_raw_records, validate_record

PLAIN = ColumnSpec(payload=("brand", "price", "tags"), lang="lang")
TEMPLATE = ColumnSpec(text_template="{title}\n{brand}")


def _check(obj: dict, columns: ColumnSpec = PLAIN):
    return validate_record(obj, columns, "f.jsonl", 1, json.dumps(obj))


@pytest.mark.parametrize("raw,expected", [
    (1, "1"), ("1", "1"), (1.0, "1"), (1.5, "1.5"), (" a b ", "a b"), (10**20, str(10**20)), (-3.0, "-3"),
])
def test_ids_normalise_to_strings(raw, expected):
    row = _check({"id": raw, "text": "t"})
    assert row.ok and row.doc_id == expected


@pytest.mark.parametrize("raw,reason", [
    (None, "missing_id"), ("", "missing_id"), ("   ", "missing_id"), (True, "invalid_id"), ([1], "invalid_id"),
    ({"a": 1}, "invalid_id"), (float("nan"), "invalid_id"), ("\ud800", "bad_utf8"),
])
def test_bad_ids_are_rejected(raw, reason):
    row = _check({"id": raw, "text": "t"})
    assert row.reason == RejectReason(reason) and row.stage == "prep" and row.doc_id is None
    assert _check({"text": "t"}).reason == RejectReason.MISSING_ID


@pytest.mark.parametrize("text,reason", [
    (None, "empty_text"), ("", "empty_text"), (" \n\t", "empty_text"), (["a"], "non_string_field"),
    ({"a": 1}, "non_string_field"), (True, "non_string_field"), ("ok\udcff", "bad_utf8"),
])
def test_bad_texts_are_rejected_with_their_id(text, reason):
    row = _check({"id": 7, "text": text})
    assert row.reason == RejectReason(reason) and row.doc_id == "7"
    assert row.original_row == json.dumps({"id": 7, "text": text})


def test_numbers_are_text():
    assert _check({"id": 1, "text": 42}).text == "42"
    assert _check({"id": 1, "text": 2.5}).text == "2.5"


def test_template_treats_missing_and_null_as_empty():
    assert validate_record({"id": 1, "title": "T", "brand": None}, TEMPLATE, "f", 1, "").text == "T\n"
    assert validate_record({"id": 1, "brand": 3}, TEMPLATE, "f", 1, "").text == "\n3"
    assert validate_record({"id": 1, "title": None}, TEMPLATE, "f", 1, "").reason == RejectReason.EMPTY_TEXT
    listed = validate_record({"id": 1, "title": "x", "brand": [1]}, TEMPLATE, "f", 1, "")
    assert listed.reason == RejectReason.NON_STRING_FIELD


def test_template_format_spec_on_text_is_a_reject_not_a_crash():
    columns = ColumnSpec(text_template="{title} {price:.2f}")
    assert validate_record({"id": 1, "title": "a", "price": 1.234}, columns, "f", 1, "").text == "a 1.23"
    row = validate_record({"id": 1, "title": "a", "price": "cheap"}, columns, "f", 1, "")
    assert row.reason == RejectReason.NON_STRING_FIELD and "text_template" in row.detail


def test_payload_and_lang():
    row = _check({"id": 1, "text": "t", "brand": "B", "price": float("inf"), "other": 1, "lang": " de "})
    assert row.payload == {"brand": "B", "price": None}
    assert row.lang == "de"
    assert _check({"id": 1, "text": "t", "lang": 5}).lang is None
    assert _check({"id": 1, "text": "t", "tags": ["x", "\ud800"]}).reason == RejectReason.BAD_UTF8


def test_column_spec_from_columns_config():
    cfg = ColumnsConfig(id="sku", text=None, text_template="{title} {brand}", payload=["brand"], lang="lang")
    spec = ColumnSpec.from_dict(cfg.model_dump())
    assert (spec.id, spec.template_fields, spec.payload, spec.lang) == ("sku", ("title", "brand"), ("brand",), "lang")
    with pytest.raises(ValueError):
        ColumnSpec(text=None)


def test_validate_raw_records_keeps_order_and_read_errors():
    raw = pa.Table.from_pylist([
        {"_file": "f", "_line": 1, "_record": '{"id": 1, "text": "a"}', "_raw": None, "_read_error": None},
        {"_file": "f", "_line": 2, "_record": None, "_raw": "{x", "_read_error": "broken_json"},
        {"_file": "f", "_line": 3, "_record": "[1]", "_raw": None, "_read_error": None},
        {"_file": "f", "_line": 4, "_record": '{"id": 2, "text": ""}', "_raw": None, "_read_error": None},
    ], schema=RAW_SCHEMA)
    rows = list(validate_raw_records(raw, ColumnSpec()))
    assert [(r.line, r.reason, r.stage) for r in rows] == [
        (1, None, None), (2, RejectReason.BROKEN_JSON, "read"), (3, RejectReason.NOT_AN_OBJECT, "read"),
        (4, RejectReason.EMPTY_TEXT, "prep")]
    assert rows[1].original_row == "{x" and rows[2].original_row == "[1]"
