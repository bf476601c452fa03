"""The first pass of an incremental or append run: scan the whole corpus cheaply (hashes, no tokens,
no vectors; jobs/index/corpus_scan.py), decide duplicate ids, diff bucket by bucket against the live
manifest, and write the plan: which records of which files to re-embed, which documents only need a payload update, and which
manifest rows carry over. Nothing is written to Qdrant here, so the gates can refuse a bad source
before the live index is touched."""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field

import pyarrow as pa

from jobs.index.config import IndexConfig

log = logging.getLogger("qbatch.index")

PAYLOAD_UPDATE_SCHEMA = pa.schema([("doc_id", pa.string()), ("payload_json", pa.string()), ("n_chunks", pa.int32())])
DELETED_SCHEMA = pa.schema([("doc_id", pa.string())])


@dataclass
class IncrementalPlan:
    summary: object  # pipeline.manifest_diff.DiffSummary
    keep_lines: dict[str, str]  # file URI -> plan file URI listing the records to re-embed (and duplicates)
    duplicate_lines: dict[str, str]  # file URI -> plan file URI listing records that repeat an earlier id
    payload_updates: object  # BucketSpill of PAYLOAD_UPDATE_SCHEMA, on local disk
    deleted: object  # BucketSpill of DELETED_SCHEMA: documents the run will delete
    read: int = 0
    rejected: collections.Counter = field(default_factory=collections.Counter)  # found by the scan
    duplicates: int = 0  # dead-lettered by the load pass, which reads them marked as duplicates

    def deleted_doc_ids(self) -> set[str]:
        """The documents this run deletes; read only after the deletion-ratio gate bounded their number."""
        return {d for i in range(self.deleted.n_buckets) for d in self.deleted.read(i)["doc_id"].to_pylist()}

    def close(self) -> None:
        self.payload_updates.close()
        self.deleted.close()


def scan_and_plan(cfg: IndexConfig, files, spec, pools, run_id: str, old_reader, dead_letter, new_manifest,
                  append: bool, run_folder: str) -> IncrementalPlan:
    """Scan, dedupe, diff and plan. Rejects go to `dead_letter` as they are found; the manifest rows of
    documents that need no embedding (unchanged, payload-only, and in append mode vanished ones) go
    straight to `new_manifest`; payload updates and deletions to disk spills. The caller closes the plan."""
    from connectors.bucket_spill import BucketSpill
    from connectors.file_progress import MANIFEST_SCHEMA
    from jobs.index.corpus_scan import add_lines, first_occurrences, scan_corpus, write_line_plans
    from pipeline.manifest_diff import DiffSummary, diff_bucket

    n_buckets = old_reader.n_buckets
    plan = IncrementalPlan(DiffSummary(), {}, {}, BucketSpill(PAYLOAD_UPDATE_SCHEMA, n_buckets),
                           BucketSpill(DELETED_SCHEMA, n_buckets))
    lines: dict[str, list[int]] = collections.defaultdict(list)
    duplicates: dict[str, list[int]] = collections.defaultdict(list)
    scan = scan_corpus(cfg, files, spec, pools, n_buckets, dead_letter=dead_letter, run_id=run_id)
    try:
        plan.read, plan.rejected = scan.read, collections.Counter(scan.rejected)
        for i in range(n_buckets):
            scanned, lost = first_occurrences(scan.spill.read(i))
            add_lines(duplicates, lost, scan.files)
            plan.duplicates += lost.num_rows
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
                    lines[scan.files[row["file_order"]]].append(row["line"])
            old_chunks = dict(zip(old["doc_id"].to_pylist(), old["n_chunks"].to_pylist()))
            for table in (diff.unchanged, diff.payload_only):
                chunks = pa.array([old_chunks[d] for d in table["doc_id"].to_pylist()], pa.int32())
                new_manifest.add(table.set_column(table.schema.get_field_index("n_chunks"), "n_chunks", chunks))
                if table is diff.payload_only and table.num_rows:
                    plan.payload_updates.add(pa.table({
                        "doc_id": table["doc_id"],
                        "payload_json": [by_id[d]["payload_json"] for d in table["doc_id"].to_pylist()],
                        "n_chunks": chunks}, schema=PAYLOAD_UPDATE_SCHEMA))
    finally:
        scan.close()
    for uri, wanted in duplicates.items():  # read marked, so the load pass dead-letters them whole
        lines[uri].extend(wanted)
    plan.keep_lines = write_line_plans(run_folder, "lines", lines, cfg.source.storage)
    plan.duplicate_lines = write_line_plans(run_folder, "duplicates", duplicates, cfg.source.storage)
    log.info("incremental plan (documents): %s; %d duplicate ids",
             {k: v for k, v in plan.summary.as_dict().items() if not k.startswith("points_")}, plan.duplicates)
    return plan
