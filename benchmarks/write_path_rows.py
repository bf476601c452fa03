"""Rows as the embed stage hands them to the Qdrant writer stage (pipeline/embed_stage.py output:
the prep-stage schema without token ids, plus `vector`), made up from random vectors, so the write
path can be measured and tested without a model. Shared by benchmarks/bench_write_path.py and the
writer-pool test."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa

from qbatch.common.end_of_file import EOF_STAGE, UnitEnd
from qbatch.pipeline.prep_stage import PREP_SCHEMA


def embedded_rows(start: int, n: int, dim: int, seed: int = 0, file: str = "s3://bench/part-0.jsonl",
                  end_unit: UnitEnd | None = None) -> pa.Table:
    """Documents `doc-{start}` .. `doc-{start + n - 1}`, one chunk each, records `start + 1 ..` of `file`,
    with unit-norm float32 vectors; `end_unit` appends that unit's end marker."""
    rng = np.random.default_rng(seed + start)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = []
    for i in range(start, start + n):
        text = f"product {i}: a short catalog description of about one hundred and fifty tokens"
        rows.append({
            "doc_id": f"doc-{i}", "chunk": 0, "n_chunks": 1, "span_start": 0, "span_end": len(text), "text": text,
            "lang": "en", "content_hash": hashlib.sha256(text.encode()).hexdigest(),
            "payload_hash": hashlib.sha256(str(i).encode()).hexdigest(), "payload_json": json.dumps({"price": i}),
            "token_ids": [], "n_tokens": 24, "truncated": False, "_file": file, "_line": i + 1,
            "reject_reason": None, "reject_stage": None, "reject_detail": None,
            "original_row": json.dumps({"id": f"doc-{i}", "text": text})})
    if end_unit is not None:
        rows.append({name: None for name in PREP_SCHEMA.names} | {
            "chunk": 0, "n_chunks": 0, "span_start": 0, "span_end": 0, "token_ids": [], "n_tokens": 0,
            "truncated": False, "_file": file, "_line": start + n, "reject_stage": EOF_STAGE,
            "reject_detail": end_unit.to_json()})
        vectors = np.vstack([vectors, np.zeros((1, dim), np.float32)])
    table = pa.Table.from_pylist(rows, schema=PREP_SCHEMA).drop_columns(["token_ids"])
    has_vector = np.array([r["reject_stage"] is None for r in rows])
    return table.append_column("vector", pa.FixedSizeListArray.from_arrays(
        pa.array(vectors.reshape(-1)), dim, mask=pa.array(~has_vector)))
