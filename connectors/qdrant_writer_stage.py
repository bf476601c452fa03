"""The Qdrant writer stage of the index job: a callable class for Ray Data `map_batches` that owns one
Qdrant client, upserts the embedded chunks of whole documents, and hands on only small
acknowledgement rows. Vectors, texts and payloads end here; the driver never sees them.

Input: the embed stage's rows (pipeline/embed_stage.py): chunk rows (a document's chunks normally
travel together; if Ray cuts a block inside a document, each part is acknowledged with its chunk
range), rejects, and end-of-unit markers.
Output (ACK_SCHEMA), one row per input document (part) or reject, after `wait=True` acknowledged every
upsert of the batch; the markers pass through; one STATS_STAGE row per batch carries the stage
statistics (prep, embed and write seconds, tokens, requests, retries) as JSON in `reject_detail`.

Test-only fault injection, read once per actor, never set in production (labelled FAULT INJECTION):
QBATCH_TEST_WRITER_FAIL_RATIO makes that share of upserts fail with a transient error before they
reach Qdrant; QBATCH_TEST_WRITER_KILL_AFTER="N:FLAG" kills the first writer process that has had N
points acknowledged while FLAG exists (it deletes FLAG first), to exercise Ray's actor restart;
QBATCH_TEST_WRITER_AWAIT_CHECKPOINTS=FOLDER makes the writer, before each batch, wait (up to 20 s)
until the driver has checkpointed every unit whose end marker it passed on earlier, and log each wait
to FOLDER/../writer-checkpoint-waits.jsonl: the driver's books must never need a later batch."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from qbatch.common.end_of_file import EOF_STAGE, STATS_STAGE
from qbatch.connectors.point_ids import point_id

ACK_SCHEMA = pa.schema([
    ("_file", pa.dictionary(pa.int32(), pa.string())),
    ("_line", pa.int64()),
    ("doc_id", pa.string()),
    ("n_chunks", pa.int32()),
    ("chunk_lo", pa.int32()),  # this row acknowledges chunks [chunk_lo, chunk_lo + chunks_here) of the document
    ("chunks_here", pa.int32()),
    ("content_hash", pa.string()),
    ("payload_hash", pa.string()),
    ("n_tokens", pa.int32()),  # real tokens over the document's chunks
    ("truncated", pa.int32()),  # chunks the tokenizer cut
    ("reject_reason", pa.string()),
    ("reject_stage", pa.string()),
    ("reject_detail", pa.string()),
    ("original_row", pa.string()),  # rejects only
])
_STAGE_STATS = {"_prep_seconds": "prep_seconds", "_embed_seconds": "embed_seconds",
                "_computed_tokens": "computed_tokens", "_micro_batches": "micro_batches"}
_FAIL_RATIO_ENV = "QBATCH_TEST_WRITER_FAIL_RATIO"
_KILL_AFTER_ENV = "QBATCH_TEST_WRITER_KILL_AFTER"
_AWAIT_CHECKPOINTS_ENV = "QBATCH_TEST_WRITER_AWAIT_CHECKPOINTS"


def build_payload(row: dict[str, Any], run_id: str, indexed_at: str, store_text: bool,
                  payload_columns: list[str]) -> dict[str, Any]:
    """The Qdrant payload of one chunk row, keys exactly as the README lists them."""
    payload = {
        "doc_id": row["doc_id"], "chunk": int(row["chunk"]), "span": [int(row["span_start"]), int(row["span_end"])],
        "lang": row["lang"], "content_hash": row["content_hash"], "payload_hash": row["payload_hash"],
        "indexed_at": indexed_at, "run_id": run_id,
    }
    if store_text:
        payload["text"] = row["text"]
    extra = json.loads(row["payload_json"]) if row["payload_json"] else {}
    for key in payload_columns:
        payload[key] = extra.get(key)
    return payload


def vector_matrix(batch: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """The batch's vectors as one (n, dim) float32 array plus a has-vector mask, without per-row
    Arrow scalars (which cost more than the upsert itself on a fast sink)."""
    n = batch.num_rows
    if "vector" not in batch.column_names or n == 0:
        return np.zeros((n, 0), np.float32), np.zeros(n, bool)
    column = batch.column("vector").combine_chunks()
    dim = column.type.list_size
    values = column.values.slice(column.offset * dim, n * dim).to_numpy(zero_copy_only=False)
    return values.reshape(n, dim), column.is_valid().to_numpy(zero_copy_only=False)


class QdrantWriterStage:
    """One Qdrant client per actor (gRPC when `qdrant.prefer_grpc`); `__call__` maps a batch to its acks."""

    def __init__(self, qdrant_cfg, collection: str, run_id: str, indexed_at: str, payload_columns: list[str],
                 undo: dict[str, Any] | None = None):
        from qbatch.connectors.qdrant_connection import connect
        from qbatch.connectors.qdrant_writer import PointWriter

        self.client = connect(qdrant_cfg)  # a local folder's lock is waited for while the driver lets go
        fail_ratio = float(os.environ.get(_FAIL_RATIO_ENV, "0") or 0)
        if fail_ratio:
            self.client = FlakyUpserts(self.client, fail_ratio)
        undo_log = None
        if undo is not None:
            from qbatch.connectors.undo_log import UndoLog

            undo_log = UndoLog(undo["run_folder"], collection, run_id, undo.get("storage"))
        # One request at a time per actor: `qdrant.parallel_writers` sizes the pool of actors instead.
        self.writer = PointWriter(self.client, collection, qdrant_cfg.upsert_batch_size, qdrant_cfg.max_retries,
                                  undo=undo_log)
        self.run_id, self.indexed_at, self.store_text = run_id, indexed_at, qdrant_cfg.store_text
        self.payload_columns = list(payload_columns)
        self._kill_after = os.environ.get(_KILL_AFTER_ENV)
        await_folder = os.environ.get(_AWAIT_CHECKPOINTS_ENV)
        self._await = CheckpointWait(Path(await_folder)) if await_folder else None

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self._await is not None:
            self._await.before(batch)
        start = time.perf_counter()
        stats: dict[str, Any] = {out: (pc.sum(batch.column(col)).as_py() or 0) if col in batch.column_names else 0
                                 for col, out in _STAGE_STATS.items()}
        if "_precision" in batch.column_names:
            stats["precisions"] = pc.unique(batch.column("_precision")).drop_null().to_pylist()
        if "_embed_started" in batch.column_names:  # 0 on all but each embed call's first row
            started = pc.filter(batch.column("_embed_started"), pc.greater(batch.column("_embed_started"), 0))
            if len(started):
                stats["embed_started"] = pc.min(started).as_py()
        matrix, has_vector = vector_matrix(batch)
        rows = batch.select([c for c in batch.column_names
                             if c not in ("vector", *_STAGE_STATS, "_precision", "_embed_started")]).to_pylist()
        acks: list[dict[str, Any]] = []
        docs: dict[tuple[str, int], list[int]] = {}
        for i, row in enumerate(rows):
            if row["reject_stage"] == EOF_STAGE or (row["reject_reason"] is not None and row["n_chunks"] == 0):
                acks.append(_ack(row, reject=row["reject_stage"] != EOF_STAGE))  # markers and read/prep rejects
            else:
                docs.setdefault((row["_file"], row["_line"]), []).append(i)
        before = dict(self.writer.stats())
        ids, vectors, payloads = [], [], []
        for members in docs.values():
            order = sorted(members, key=lambda j: rows[j]["chunk"])
            chunks = [rows[j] for j in order]
            # Ray may cut a block between two chunks of a document: each part is written and acked on
            # its own, with its chunk range, and the driver puts the document together.
            part = {"chunk_lo": chunks[0]["chunk"], "chunks_here": len(chunks)}
            whole = len(chunks) == chunks[0]["n_chunks"]
            bad = next((r for r in chunks if r["reject_reason"] is not None), None)
            if bad is not None:
                acks.append(_ack({**chunks[0], "reject_reason": bad["reject_reason"], "reject_stage": bad["reject_stage"],
                                  "reject_detail": f"chunk {bad['chunk']}"}, reject=True, **part))
                continue
            for j in order:
                ids.append(point_id(rows[j]["doc_id"], rows[j]["chunk"]))
                vectors.append(matrix[j])
                payloads.append(build_payload(rows[j], self.run_id, self.indexed_at, self.store_text,
                                              self.payload_columns))
            acks.append(_ack(chunks[0], reject=not whole, n_tokens=sum(int(r["n_tokens"]) for r in chunks),
                             truncated=sum(int(bool(r["truncated"])) for r in chunks), **part))
        if ids:
            self.writer.write(ids, np.stack(vectors), payloads)
        self.writer.flush()  # every point acknowledged (wait=True) before any ack row leaves
        self._maybe_die()
        after = self.writer.stats()
        stats.update({k: after[k] - before.get(k, 0) for k in after})
        stats.update(write_seconds=time.perf_counter() - start, pid=os.getpid())
        acks.append({"reject_stage": STATS_STAGE, "reject_detail": json.dumps(stats, sort_keys=True), "_line": 0})
        return pa.Table.from_pylist(acks, schema=ACK_SCHEMA)

    def _maybe_die(self) -> None:
        """FAULT INJECTION (tests only): die once after N acknowledged points, before acking the batch."""
        if not self._kill_after:
            return
        after, flag = self._kill_after.split(":", 1)
        if self.writer.counters.points_written >= int(after):
            try:
                os.remove(flag)
            except FileNotFoundError:
                return
            os._exit(17)


def _ack(row: dict[str, Any], reject: bool = False, n_tokens: int = 0, truncated: int = 0, chunk_lo: int = 0,
         chunks_here: int | None = None) -> dict[str, Any]:
    """One ack row; `reject` also keeps the original row (a rejected document, or a part of a document
    whose other parts may yet be rejected)."""
    return {"_file": row["_file"], "_line": row["_line"], "doc_id": row["doc_id"], "n_chunks": row["n_chunks"],
            "chunk_lo": chunk_lo, "chunks_here": row["n_chunks"] if chunks_here is None else chunks_here,
            "content_hash": row["content_hash"], "payload_hash": row["payload_hash"], "n_tokens": n_tokens,
            "truncated": truncated, "reject_reason": row["reject_reason"], "reject_stage": row["reject_stage"],
            "reject_detail": row["reject_detail"], "original_row": row["original_row"] if reject else None}


class CheckpointWait:
    """FAULT INJECTION's counterpart (tests only): waits until the driver has checkpointed every unit
    whose end marker this writer passed on in earlier batches, and logs how long that took."""

    def __init__(self, folder: Path, timeout_s: float = 20.0):
        self.folder, self.timeout_s, self.units_passed = folder, timeout_s, 0

    def before(self, batch: pa.Table) -> None:
        start = time.monotonic()
        done = 0
        while time.monotonic() - start < self.timeout_s:
            done = len(list(self.folder.glob("*.done.json"))) if self.folder.exists() else 0
            if done >= self.units_passed:
                break
            time.sleep(0.05)
        with open(self.folder.parent / "writer-checkpoint-waits.jsonl", "a") as log:
            log.write(json.dumps({"expected": self.units_passed, "done": done,
                                  "waited_s": round(time.monotonic() - start, 3)}) + "\n")
        self.units_passed += pc.sum(pc.equal(batch.column("reject_stage"), EOF_STAGE)).as_py() or 0


class FlakyUpserts:
    """FAULT INJECTION (tests only): a real client whose upserts fail transiently, seeded, `ratio` of the
    time, before reaching Qdrant; everything else is forwarded untouched."""

    def __init__(self, client, ratio: float, seed: int = 7):
        self._client, self._ratio, self._rng = client, ratio, random.Random(seed + os.getpid())
        self.injected = 0

    def upsert(self, *args, **kwargs):
        if self._rng.random() < self._ratio:
            self.injected += 1
            raise ConnectionError("injected transient upsert failure (fault injection)")
        return self._client.upsert(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)
