"""The first pass of an incremental or append run: read the whole corpus cheaply (hashes, no
tokens, no vectors), diff it bucket by bucket against the live manifest, and write the plan:
which records of which files to re-embed, which documents only need a payload update, and which
manifest rows carry over. Nothing is written to Qdrant here, so the gates can refuse a bad source
before the live index is touched."""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field

import pyarrow as pa

from common.end_of_file import EOF_STAGE
from jobs.index.config import IndexConfig

log = logging.getLogger("qbatch.index")

SCAN_SCHEMA = pa.schema([("doc_id", pa.string()), ("content_hash", pa.string()), ("payload_hash", pa.string()),
                         ("payload_json", pa.string()), ("file", pa.string()), ("line", pa.int64())])


PAYLOAD_UPDATE_SCHEMA = pa.schema([("doc_id", pa.string()), ("payload_json", pa.string()), ("n_chunks", pa.int32())])
DELETED_SCHEMA = pa.schema([("doc_id", pa.string())])


@dataclass
class IncrementalPlan:
    summary: object  # pipeline.manifest_diff.DiffSummary
    keep_lines: dict[str, str]  # file URI -> plan file URI listing the records to re-embed
    payload_updates: object  # BucketSpill of PAYLOAD_UPDATE_SCHEMA, on local disk
    deleted: object  # BucketSpill of DELETED_SCHEMA: documents the run will delete
    read: int = 0
    rejected: collections.Counter = field(default_factory=collections.Counter)

    def deleted_doc_ids(self) -> set[str]:
        """The documents this run deletes; read only after the deletion-ratio gate bounded their number."""
        return {d for i in range(self.deleted.n_buckets) for d in self.deleted.read(i)["doc_id"].to_pylist()}

    def close(self) -> None:
        self.payload_updates.close()
        self.deleted.close()


def scan_and_plan(cfg: IndexConfig, files, spec, pools, run_id: str, old_reader, dead_letter, new_manifest,
                  append: bool, run_root: str) -> IncrementalPlan:
    """Scan, dedupe, diff and plan. Rejects go to `dead_letter` as they are found; the manifest rows of
    documents that need no embedding (unchanged, payload-only, and in append mode vanished ones) go
    straight to `new_manifest`; payload updates and deletions to disk spills. The caller closes the plan."""
    from connectors.bucket_spill import BucketSpill
    from connectors.file_progress import MANIFEST_SCHEMA, file_key
    from connectors.object_store import join_uri, table_to_parquet, write_bytes
    from connectors.seen_ids_store import SeenIdsStore
    from jobs.index.dataset_plan import build_index_dataset
    from pipeline.manifest_diff import DiffSummary, diff_bucket

    n_buckets = old_reader.n_buckets
    plan = IncrementalPlan(DiffSummary(), {}, BucketSpill(PAYLOAD_UPDATE_SCHEMA, n_buckets),
                           BucketSpill(DELETED_SCHEMA, n_buckets))
    lines: dict[str, list[int]] = collections.defaultdict(list)
    with BucketSpill(SCAN_SCHEMA, n_buckets) as spill, SeenIdsStore() as seen:
        ds = build_index_dataset(cfg, files, spec.fingerprint, spec.dim, pools, scan_only=True)
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=2):
            rows = [r for r in batch.drop_columns(["token_ids"]).to_pylist() if r["reject_stage"] != EOF_STAGE]
            plan.read += len(rows)
            bad = [r for r in rows if r["reject_reason"] is not None]
            good = [r for r in rows if r["reject_reason"] is None]
            owners = seen.claim((r["doc_id"], r["_file"], r["_line"]) for r in good)
            for r, owner in zip(good, owners):
                if not owner:
                    r["reject_reason"], r["reject_stage"], r["reject_detail"] = \
                        "duplicate_id", "sink", "an earlier row has this id"
                    bad.append(r)
            for r in bad:
                plan.rejected[r["reject_reason"]] += 1
            if bad:
                dead_letter.write([{"run_id": run_id, "doc_id": r["doc_id"], "reason": r["reject_reason"],
                                    "stage": r["reject_stage"], "file": r["_file"], "line": r["_line"],
                                    "original_row": r["original_row"], "detail": r.get("reject_detail")}
                                   for r in bad])
            kept = [r for r, owner in zip(good, owners) if owner]
            spill.add(pa.table({"doc_id": [r["doc_id"] for r in kept],
                                "content_hash": [r["content_hash"] for r in kept],
                                "payload_hash": [r["payload_hash"] for r in kept],
                                "payload_json": [r["payload_json"] for r in kept],
                                "file": [r["_file"] for r in kept], "line": [r["_line"] for r in kept]},
                               schema=SCAN_SCHEMA))
        for i in range(n_buckets):
            scanned = spill.read(i)
            new = scanned.select(["doc_id", "content_hash", "payload_hash"]).append_column(
                "n_chunks", pa.array([0] * scanned.num_rows, pa.int32()))  # unknown until chunked
            old = old_reader.read_bucket(i)
            diff = diff_bucket(old, new)
            if append:  # an append run never deletes: what vanished from the source stays indexed
                new_manifest.add(diff.deleted.select(MANIFEST_SCHEMA.names))
                diff = type(diff)(diff.new_docs, diff.changed, diff.payload_only, diff.deleted.slice(0, 0),
                                  diff.unchanged)
            plan.summary = plan.summary + diff.summary()
            plan.deleted.add(diff.deleted.select(["doc_id"]))
            by_id = {r["doc_id"]: r for r in scanned.to_pylist()}
            for table in (diff.new_docs, diff.changed):
                for doc_id in table["doc_id"].to_pylist():
                    row = by_id[doc_id]
                    lines[row["file"]].append(row["line"])
            old_chunks = dict(zip(old["doc_id"].to_pylist(), old["n_chunks"].to_pylist()))
            for table in (diff.unchanged, diff.payload_only):
                chunks = pa.array([old_chunks[d] for d in table["doc_id"].to_pylist()], pa.int32())
                new_manifest.add(table.set_column(table.schema.get_field_index("n_chunks"), "n_chunks", chunks))
                if table is diff.payload_only and table.num_rows:
                    plan.payload_updates.add(pa.table({
                        "doc_id": table["doc_id"],
                        "payload_json": [by_id[d]["payload_json"] for d in table["doc_id"].to_pylist()],
                        "n_chunks": chunks}, schema=PAYLOAD_UPDATE_SCHEMA))
    for uri, wanted in lines.items():
        target = join_uri(run_root, "runs", run_id, "plan", f"{file_key(uri)}.lines.parquet")
        write_bytes(target, table_to_parquet(pa.table({"line": pa.array(sorted(wanted), pa.int64())})),
                    cfg.source.storage)
        plan.keep_lines[uri] = target
    log.info("incremental plan (documents): %s",
             {k: v for k, v in plan.summary.as_dict().items() if not k.startswith("points_")})
    return plan
