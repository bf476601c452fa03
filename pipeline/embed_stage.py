"""The embed stage of the index job: a callable class for Ray Data `map_batches` that loads the
embedder once per actor and turns prepared chunk rows (token ids) into vectors.

Input: the prep-stage schema (see pipeline/prep_stage.py). Output: the same rows without `token_ids`,
plus `vector` (list<float32>, empty for rejects) and per-batch stats on the batch's first row
(`_embed_seconds`, `_computed_tokens`, `_micro_batches`, `_embed_started`, the call's start as Unix
time, so the report can tell when the first vector began, and `_precision`, the dtype the model ran
in: actors decide it on their own machine), so the driver counts them exactly once.
A row whose vector is non-finite becomes a reject (`non_finite_vector`, stage `embed`); it never
fails the batch."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import pyarrow as pa

NON_FINITE_VECTOR = "non_finite_vector"

# Test-only fault injection, read once per actor. QBATCH_TEST_EMBED_DELAY_S slows every batch so a
# kill lands mid-run; QBATCH_TEST_SLOW_FILE="NAME:SECONDS" slows only batches of input files whose URI
# contains NAME, so files finish out of order; QBATCH_TEST_FAIL_ONCE_FILE makes the first actor that
# finds the file delete it and die, to exercise Ray's actor restart. Never set in production.
_DELAY_ENV = "QBATCH_TEST_EMBED_DELAY_S"
_SLOW_FILE_ENV = "QBATCH_TEST_SLOW_FILE"
_FAIL_ONCE_ENV = "QBATCH_TEST_FAIL_ONCE_FILE"


class EmbedStage:
    """Loads the model once in __init__; __call__ maps a pyarrow batch."""

    def __init__(self, embedder_kwargs: dict[str, Any], torch_threads: int | None = None):
        if torch_threads:
            import torch

            torch.set_num_threads(int(torch_threads))
        from qbatch.pipeline.embedder import Embedder

        self.embedder = Embedder.from_pretrained(**embedder_kwargs)
        self.dim = self.embedder.dim
        self._delay = float(os.environ.get(_DELAY_ENV, "0") or 0)
        self._fail_once = os.environ.get(_FAIL_ONCE_ENV)
        slow = os.environ.get(_SLOW_FILE_ENV)
        self._slow_file = (slow.rsplit(":", 1)[0], float(slow.rsplit(":", 1)[1])) if slow else None

    def _maybe_inject_fault(self, batch: pa.Table) -> None:
        if self._delay:
            time.sleep(self._delay)
        if self._slow_file and batch.num_rows and self._slow_file[0] in batch.column("_file")[0].as_py():
            time.sleep(self._slow_file[1])
        if self._fail_once:
            try:
                os.remove(self._fail_once)
            except FileNotFoundError:
                return
            os._exit(17)  # simulate a crashed actor process; Ray restarts it and retries the task

    def __call__(self, batch: pa.Table) -> pa.Table:
        self._maybe_inject_fault(batch)
        started_at, start = time.time(), time.perf_counter()
        n = batch.num_rows
        reasons = batch.column("reject_reason").to_pylist()
        stages = batch.column("reject_stage").to_pylist()
        lengths = batch.column("n_tokens").to_pylist()
        todo = [i for i in range(n) if reasons[i] is None and lengths[i]]  # skips end-of-file markers
        matrix = np.zeros((n, self.dim), dtype=np.float32)
        has_vector = np.zeros(n, dtype=bool)
        before = self.embedder.counters.as_dict()
        if todo:
            ids_col = batch.column("token_ids").to_pylist()
            embedded, valid = self.embedder.embed_token_ids([ids_col[i] for i in todo])
            rows = np.asarray(todo)
            matrix[rows[valid]] = embedded[valid]
            has_vector[rows[valid]] = True
            for row in rows[~valid]:
                reasons[row], stages[row] = NON_FINITE_VECTOR, "embed"
        after = self.embedder.counters.as_dict()
        out = batch.drop_columns(["token_ids"])
        out = out.set_column(out.schema.get_field_index("reject_reason"), "reject_reason",
                             pa.array(reasons, pa.string()))
        out = out.set_column(out.schema.get_field_index("reject_stage"), "reject_stage",
                             pa.array(stages, pa.string()))
        vectors = pa.FixedSizeListArray.from_arrays(
            pa.array(matrix.reshape(-1)), self.dim, mask=pa.array(~has_vector))
        out = out.append_column("vector", vectors)
        first_row_only = lambda value, kind: pa.array([value] + [0] * (n - 1), kind)  # noqa: E731
        elapsed = time.perf_counter() - start
        out = out.append_column("_embed_seconds", first_row_only(elapsed, pa.float64()))
        out = out.append_column("_computed_tokens", first_row_only(
            after["computed_tokens"] - before["computed_tokens"], pa.int64()))
        out = out.append_column("_micro_batches", first_row_only(
            after["micro_batches"] - before["micro_batches"], pa.int64()))
        out = out.append_column("_embed_started", first_row_only(started_at, pa.float64()))
        out = out.append_column("_precision", pa.array([self.embedder.precision] + [None] * (n - 1), pa.string()))
        return out
