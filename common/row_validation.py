"""Turn raw records (connectors/corpus_file_reader.py's schema) into validated documents: a string id,
the text to embed, the payload and the language, or a reject reason. Pure functions, no I/O.

Id rules: strings are stripped; integers and integral floats become their integer digits (`1`, `"1"`
and `1.0` all give "1"); other finite floats keep their shortest repr ("1.5"); bool, list, dict,
NaN/inf are `invalid_id`; null, a missing field or a blank string are `missing_id`.
"""

from __future__ import annotations

import enum
import json
import math
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa


class RejectReason(str, enum.Enum):
    """Every reason a row can be rejected for, across the whole index job."""

    MISSING_ID = "missing_id"
    INVALID_ID = "invalid_id"
    DUPLICATE_ID = "duplicate_id"  # assigned by the run's plan, which scans every id before embedding
    EMPTY_TEXT = "empty_text"
    NON_STRING_FIELD = "non_string_field"
    BAD_UTF8 = "bad_utf8"
    BROKEN_JSON = "broken_json"  # the next four are assigned by the file reader
    NOT_AN_OBJECT = "not_an_object"
    CSV_PARSE_ERROR = "csv_parse_error"
    NON_FINITE_VECTOR = "non_finite_vector"  # assigned by the embed stage


class _Reject(Exception):
    def __init__(self, reason: RejectReason, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ColumnSpec:
    """Which record fields mean what; built from ColumnsConfig.model_dump() (pipeline/ never imports jobs/)."""

    id: str = "id"
    text: str | None = "text"
    text_template: str | None = None
    payload: tuple[str, ...] = ()
    lang: str | None = None
    template_fields: tuple[str, ...] = field(default=(), init=False)

    def __post_init__(self) -> None:
        if not self.text_template and not self.text:
            raise ValueError("set columns.text or columns.text_template")
        if self.text_template:
            names = [f for _, f, _, _ in string.Formatter().parse(self.text_template) if f]
            object.__setattr__(self, "template_fields", tuple(dict.fromkeys(names)))

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> "ColumnSpec":
        return cls(id=cfg.get("id", "id"), text=cfg.get("text", "text"),
                   text_template=cfg.get("text_template"), payload=tuple(cfg.get("payload") or ()),
                   lang=cfg.get("lang"))


@dataclass(frozen=True)
class ValidatedRow:
    """One raw record after validation: a document (reason None) or a reject."""

    file: str
    line: int
    doc_id: str | None = None
    text: str | None = None
    payload: dict[str, Any] | None = None
    lang: str | None = None
    reason: RejectReason | None = None
    stage: str | None = None  # "read", "prep" or "plan" (duplicate ids) for rejects
    detail: str | None = None
    original_row: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


def _has_surrogates(value: Any) -> bool:
    # json.loads turns "\ud800" escapes into lone surrogates, which no UTF-8 sink accepts.
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return False
        except UnicodeEncodeError:
            return True
    if isinstance(value, dict):
        return any(_has_surrogates(k) or _has_surrogates(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogates(v) for v in value)
    return False


def normalise_id(value: Any) -> str:
    """The document id as a string; raises _Reject (missing_id / invalid_id / bad_utf8)."""
    if value is None:
        raise _Reject(RejectReason.MISSING_ID, "id is null or absent")
    if isinstance(value, bool) or isinstance(value, (list, dict)):
        raise _Reject(RejectReason.INVALID_ID, f"id must be a string or number, got {type(value).__name__}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Reject(RejectReason.INVALID_ID, f"id is {value}")
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        if _has_surrogates(value):
            raise _Reject(RejectReason.BAD_UTF8, "id holds an unpaired surrogate")
        stripped = value.strip()
        if not stripped:
            raise _Reject(RejectReason.MISSING_ID, "id is blank")
        return stripped
    raise _Reject(RejectReason.INVALID_ID, f"id has unsupported type {type(value).__name__}")


def _text_piece(record: Mapping[str, Any], name: str) -> str | int | float:
    value = record.get(name)
    if value is None:
        return ""  # a missing or null field contributes nothing
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value  # kept a number so a template may format it ({price:.2f}); str() otherwise
    raise _Reject(RejectReason.NON_STRING_FIELD, f"field {name!r} is a {type(value).__name__}, not text")


def build_text(record: Mapping[str, Any], columns: ColumnSpec) -> str:
    """The text to embed: the text column, or the template filled with the record's fields."""
    if columns.text_template:
        values = {name: _text_piece(record, name) for name in columns.template_fields}
        try:
            text = columns.text_template.format_map(values)
        except (ValueError, KeyError, IndexError, AttributeError) as e:
            # e.g. a format spec such as {price:.2f} applied to a text value
            raise _Reject(RejectReason.NON_STRING_FIELD, f"text_template cannot format this row: {e}") from None
    else:
        text = str(_text_piece(record, columns.text or "text"))
    if _has_surrogates(text):
        raise _Reject(RejectReason.BAD_UTF8, "text holds an unpaired surrogate")
    if not text.strip():
        raise _Reject(RejectReason.EMPTY_TEXT, "text is empty or whitespace only")
    return text


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON (and Qdrant) have no NaN/inf
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def extract_payload(record: Mapping[str, Any], columns: ColumnSpec) -> dict[str, Any]:
    """The payload columns present in the record, as JSON values; absent columns are left out."""
    payload = {name: _jsonable(record[name]) for name in columns.payload if name in record}
    if _has_surrogates(payload):
        raise _Reject(RejectReason.BAD_UTF8, "a payload field holds an unpaired surrogate")
    return payload


def validate_record(obj: Mapping[str, Any], columns: ColumnSpec, file: str, line: int,
                    original_row: str) -> ValidatedRow:
    """One parsed JSON object, validated."""
    doc_id: str | None = None
    try:
        doc_id = normalise_id(obj.get(columns.id))
        text = build_text(obj, columns)
        payload = extract_payload(obj, columns)
    except _Reject as r:
        return ValidatedRow(file=file, line=line, doc_id=doc_id, reason=r.reason, stage="prep",
                            detail=r.detail, original_row=original_row)
    lang_value = obj.get(columns.lang) if columns.lang else None
    lang = None
    if isinstance(lang_value, str) and not _has_surrogates(lang_value):
        lang = lang_value.strip() or None  # a language is a tag; anything else is no language
    # Good rows keep their record too: a document whose embedding fails is dead-lettered with it.
    return ValidatedRow(file=file, line=line, doc_id=doc_id, text=text, payload=payload, lang=lang,
                        original_row=original_row)


def validate_raw_records(raw: pa.Table, columns: ColumnSpec) -> Iterator[ValidatedRow]:
    """One ValidatedRow per raw record, in order; read errors pass through as `read`-stage rejects."""
    files = raw.column("_file").to_pylist()
    lines = raw.column("_line").to_pylist()
    records = raw.column("_record").to_pylist()
    raws = raw.column("_raw").to_pylist()
    errors = raw.column("_read_error").to_pylist()
    for file, line, record, raw_text, error in zip(files, lines, records, raws, errors):
        if error == RejectReason.DUPLICATE_ID.value:  # the run's plan found this id earlier in the corpus
            try:
                first = validate_record(json.loads(record), columns, file, line, record)
            except (TypeError, ValueError, AttributeError):
                first = ValidatedRow(file=file, line=line)
            yield ValidatedRow(file=file, line=line, doc_id=first.doc_id, reason=RejectReason.DUPLICATE_ID,
                               stage="plan", detail="an earlier record (in file order, then line order) has this id",
                               original_row=record if record is not None else raw_text)
            continue
        if error is not None or record is None:
            reason = RejectReason(error) if error else RejectReason.BROKEN_JSON
            yield ValidatedRow(file=file, line=line, reason=reason, stage="read",
                               detail=f"unreadable row: {reason.value}", original_row=raw_text)
            continue
        try:
            obj = json.loads(record)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            reason = RejectReason.BROKEN_JSON if obj is None else RejectReason.NOT_AN_OBJECT
            yield ValidatedRow(file=file, line=line, reason=reason, stage="read",
                               detail="the record is not a JSON object", original_row=record)
            continue
        yield validate_record(obj, columns, file, line, record)
