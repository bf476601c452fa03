"""The first pass of every index run: read the whole corpus cheaply (hashes; no tokens, no vectors,
no model) and decide duplicate ids before anything is embedded.

Good rows are spilled to local disk by doc-id bucket; each bucket is then sorted by (doc_id, file
order, line), and the first occurrence of an id wins. The outcome does not depend on the order in
which Ray delivers rows, nor on how many read or prep actors there are. Later occurrences become
per-file line plans (connectors/run_plan_store.py) that the embed pass's readers mark as `duplicate_id`
rejects, so they are dead-lettered with their original rows and never embedded."""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from qbatch.common.end_of_file import EOF_STAGE
from qbatch.jobs.index.config import IndexConfig

log = logging.getLogger("qbatch.index")

SCAN_SCHEMA = pa.schema([("doc_id", pa.string()), ("content_hash", pa.string()), ("payload_hash", pa.string()),
                         ("payload_json", pa.string()), ("file_order", pa.int32()), ("line", pa.int64())])


@dataclass
class CorpusScan:
    """Every good row's hashes, by bucket on local disk, plus what the scan rejected."""

    spill: object  # qbatch.connectors.bucket_spill.BucketSpill of SCAN_SCHEMA, every occurrence
    files: list[str]  # file URIs in file order: `file_order` indexes this
    read: int = 0
    rejected: collections.Counter = field(default_factory=collections.Counter)  # validation rejects
    reject_lines: dict[str, list[int]] = field(default_factory=lambda: collections.defaultdict(list))
    seconds: float = 0.0  # the scan's wall time

    def close(self) -> None:
        self.spill.close()


def scan_corpus(cfg: IndexConfig, files, spec, pools, n_buckets: int, dead_letter=None, run_id: str | None = None,
                with_payloads: bool = True, read=None) -> CorpusScan:
    """Read every record (or what `read`, a dataset_plan.ReadPlan, selects) once through the prep stage
    in scan mode. Rejects are counted, their lines kept, and (with `dead_letter`) written there with
    their original rows."""
    from qbatch.connectors.bucket_spill import BucketSpill
    from qbatch.jobs.index.dataset_plan import ReadPlan, build_index_dataset

    start = time.perf_counter()
    uris = [f.uri for f in files]
    scan = CorpusScan(BucketSpill(SCAN_SCHEMA, n_buckets), uris)
    order = pa.array(uris, pa.string())
    ds = build_index_dataset(cfg, files, spec.fingerprint, spec.dim, pools, read=read or ReadPlan(), scan_only=True)
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=2):
        marker = pc.fill_null(pc.equal(batch.column("reject_stage"), EOF_STAGE), False)
        batch = batch.filter(pc.invert(marker))
        bad_mask = pc.is_valid(batch.column("reject_reason"))
        good = batch.filter(pc.invert(bad_mask))
        scan.read += batch.num_rows
        payloads = good.column("payload_json") if with_payloads else pa.nulls(good.num_rows, pa.string())
        scan.spill.add(pa.table({
            "doc_id": good.column("doc_id"), "content_hash": good.column("content_hash"),
            "payload_hash": good.column("payload_hash"), "payload_json": payloads,
            "file_order": pc.cast(pc.index_in(good.column("_file"), value_set=order), pa.int32()),
            "line": good.column("_line")}, schema=SCAN_SCHEMA))
        bad = batch.filter(bad_mask).select(["doc_id", "_file", "_line", "reject_reason", "reject_stage",
                                             "reject_detail", "original_row"]).to_pylist()
        for r in bad:
            scan.rejected[r["reject_reason"]] += 1
            scan.reject_lines[r["_file"]].append(r["_line"])
        if bad and dead_letter is not None:
            dead_letter.write([{"run_id": run_id, "doc_id": r["doc_id"], "reason": r["reject_reason"],
                                "stage": r["reject_stage"], "file": r["_file"], "line": r["_line"],
                                "original_row": r["original_row"], "detail": r["reject_detail"]} for r in bad])
    scan.seconds = time.perf_counter() - start
    return scan


def first_occurrences(bucket: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(winners, losers) of one bucket of SCAN_SCHEMA rows: per doc_id, the row first in (file order,
    line) order wins; every other row of that id loses."""
    if bucket.num_rows == 0:
        return bucket, bucket
    ordered = bucket.take(pc.sort_indices(bucket, [("doc_id", "ascending"), ("file_order", "ascending"),
                                                   ("line", "ascending")]))
    ids = ordered.column("doc_id").combine_chunks()
    n = len(ids)
    first = pa.concat_arrays([pa.array([True]), pc.not_equal(ids.slice(1), ids.slice(0, n - 1))])
    return ordered.filter(first), ordered.filter(pc.invert(first))


def add_lines(target: dict[str, list[int]], table: pa.Table, files: list[str]) -> None:
    """Append the (file_order, line) rows of `table` to `target`, keyed by file URI."""
    for file_order, line in zip(table.column("file_order").to_pylist(), table.column("line").to_pylist()):
        target[files[file_order]].append(line)
