"""The corpus side of the rerank job's corpus join: raw corpus records (connectors/corpus_file_reader.py)
-> (doc_id, text, text_rank) for every record that passes the index job's validation (common/
row_validation.py). `text_rank` is the record's place in the corpus (file index in the sorted listing,
record number), so the join's consumer keeps the first record of an id, as the index job does; records
that fail validation are left out, so a candidate whose every record is invalid counts as missing."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from qbatch.common.end_of_file import END_OF_FILE
from qbatch.common.row_validation import ColumnSpec, validate_raw_records
from qbatch.pipeline.rerank_rows import TEXT_RANK_SHIFT

CORPUS_TEXT_SCHEMA = pa.schema([pa.field("doc_id", pa.string()), pa.field("text", pa.string()),
                                pa.field("text_rank", pa.int64())])


def corpus_text_rows(raw: pa.Table, columns: dict[str, Any], file_index: dict[str, int]) -> pa.Table:
    """One Ray Data block of raw corpus records -> its valid documents' ids, texts and corpus order."""
    raw = raw.filter(pc.invert(pc.fill_null(pc.equal(raw.column("_read_error"), END_OF_FILE), False)))
    spec = ColumnSpec(id=columns["id_column"], text=columns["text_column"], text_template=columns["text_template"])
    ids, texts, ranks = [], [], []
    for row in validate_raw_records(raw, spec):
        if row.ok:
            ids.append(row.doc_id)
            texts.append(row.text)
            ranks.append((file_index[row.file] << TEXT_RANK_SHIFT) | int(row.line))
    return pa.table({"doc_id": pa.array(ids, pa.string()), "text": pa.array(texts, pa.string()),
                     "text_rank": pa.array(ranks, pa.int64())}, schema=CORPUS_TEXT_SCHEMA)
