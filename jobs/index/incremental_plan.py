"""The first pass of an incremental or append run: scan the whole corpus cheaply (hashes, no tokens,
no vectors; jobs/index/corpus_scan.py), decide duplicate ids, diff bucket by bucket against the live
manifest, and write the plan: which records of which files to re-embed, which documents only need a
payload update, which the run deletes, and which manifest rows carry over. Nothing is written to
Qdrant here, so the gates can refuse a bad source before the live index is touched.

The plan is persisted with the run (connectors/run_plan_store.py) before anything is written, and
every attempt runs from the persisted copy: a resumed attempt never scans again, so it does exactly
what the first attempt planned even if the source changed in between."""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field

import pyarrow as pa

log = logging.getLogger("qbatch.index")

PAYLOAD_UPDATE_SCHEMA = pa.schema([("doc_id", pa.string()), ("payload_json", pa.string()), ("n_chunks", pa.int32())])
DELETED_SCHEMA = pa.schema([("doc_id", pa.string())])


@dataclass
class IncrementalPlan:
    summary: object  # qbatch.pipeline.manifest_diff.DiffSummary
    keep_lines: dict[str, str]  # file URI -> plan file URI listing the records to re-embed (and duplicates)
    duplicate_lines: dict[str, str]  # file URI -> plan file URI listing records that repeat an earlier id
    payload_updates: object  # PlannedBuckets of PAYLOAD_UPDATE_SCHEMA
    deleted: object  # PlannedBuckets of DELETED_SCHEMA: documents the run will delete
    carried: object  # PlannedBuckets of MANIFEST_SCHEMA: manifest rows of documents the run does not embed
    store: object  # qbatch.connectors.run_plan_store.RunPlanStore: where the plan lives
    files: list = field(default_factory=list)  # the listing the plan was made from (CorpusFile)
    read: int = 0
    rejected: collections.Counter = field(default_factory=collections.Counter)  # found by the scan
    duplicates: int = 0  # dead-lettered by the load pass, which reads them marked as duplicates
    reused: bool = False  # read back from an earlier attempt

    def deleted_doc_ids(self) -> set[str]:
        """The documents this run deletes; read only after the deletion-ratio gate bounded their number."""
        return {d for i in range(self.deleted.n_buckets) for d in self.deleted.read(i)["doc_id"].to_pylist()}

    def rejects(self):
        """The scan's rejects as dead-letter tables; every attempt hands them to the run's table."""
        return self.store.iter_rejects()


def plan_incremental(run, old_reader, append: bool, scan: bool = True) -> IncrementalPlan | None:
    """The run's plan: read back if an earlier attempt made one, else (with `scan`; None without)
    scanned, diffed and saved."""
    from qbatch.connectors.run_plan_store import RunPlanStore, planned_files
    from qbatch.connectors.file_progress import MANIFEST_SCHEMA
    from qbatch.pipeline.manifest_diff import DiffSummary

    store = RunPlanStore(run.run_folder, run.storage)
    saved = store.load()
    reused = saved is not None
    if reused:
        log.info("reusing the plan of an earlier attempt: %s", saved["summary"])
    elif not scan:
        return None
    else:
        saved = _scan_and_plan(run, old_reader, append, store)
    n = int(saved["n_buckets"])
    return IncrementalPlan(
        DiffSummary(**saved["summary"]), saved["keep_lines"], saved["duplicate_lines"],
        store.buckets("payload_updates", PAYLOAD_UPDATE_SCHEMA, n), store.buckets("deleted", DELETED_SCHEMA, n),
        store.buckets("carried", MANIFEST_SCHEMA, n), store, planned_files(saved["files"], run.files, run.run_id),
        int(saved["read"]), collections.Counter(saved["rejected"]), int(saved["duplicates"]), reused)


def _scan_and_plan(run, old_reader, append: bool, store) -> dict:
    """Scan, dedupe, diff and persist the plan; its marker. Rejects go to the plan's reject parts;
    manifest rows of documents that need no embedding (unchanged, payload-only, and in append mode
    vanished ones), payload updates and deletions to local spills, then to the plan's folder."""
    from qbatch.connectors.bucket_spill import BucketSpill
    from qbatch.connectors.file_progress import MANIFEST_SCHEMA
    from qbatch.jobs.index.corpus_scan import add_lines, first_occurrences, scan_corpus
    from qbatch.pipeline.manifest_diff import DiffSummary, diff_bucket

    n_buckets = old_reader.n_buckets
    summary = DiffSummary()
    lines: dict[str, list[int]] = collections.defaultdict(list)
    duplicates: dict[str, list[int]] = collections.defaultdict(list)
    with store.rejects_writer(run.run_id) as rejects:
        scan = scan_corpus(run.cfg, run.files, run.spec, run.pools, n_buckets, dead_letter=rejects, run_id=run.run_id)
    run.report["scan_s"] = scan.seconds
    payload_updates, deleted = BucketSpill(PAYLOAD_UPDATE_SCHEMA, n_buckets), BucketSpill(DELETED_SCHEMA, n_buckets)
    carried = BucketSpill(MANIFEST_SCHEMA, n_buckets)
    try:
        for i in range(n_buckets):
            scanned, lost = first_occurrences(scan.spill.read(i))
            add_lines(duplicates, lost, scan.files)
            new = scanned.select(["doc_id", "content_hash", "payload_hash"]).append_column(
                "n_chunks", pa.array([0] * scanned.num_rows, pa.int32()))  # unknown until chunked
            old = old_reader.read_bucket(i)
            diff = diff_bucket(old, new)
            if append:  # an append run never deletes: what vanished from the source stays indexed
                carried.add(diff.deleted.select(MANIFEST_SCHEMA.names))
                diff = type(diff)(diff.new_docs, diff.changed, diff.payload_only, diff.deleted.slice(0, 0),
                                  diff.unchanged)
            summary = summary + diff.summary()
            deleted.add(diff.deleted.select(["doc_id"]))
            by_id = {r["doc_id"]: r for r in scanned.to_pylist()}
            for table in (diff.new_docs, diff.changed):
                for doc_id in table["doc_id"].to_pylist():
                    row = by_id[doc_id]
                    lines[scan.files[row["file_order"]]].append(row["line"])
            old_chunks = dict(zip(old["doc_id"].to_pylist(), old["n_chunks"].to_pylist()))
            for table in (diff.unchanged, diff.payload_only):
                chunks = pa.array([old_chunks[d] for d in table["doc_id"].to_pylist()], pa.int32())
                carried.add(table.set_column(table.schema.get_field_index("n_chunks"), "n_chunks", chunks))
                if table is diff.payload_only and table.num_rows:
                    payload_updates.add(pa.table({
                        "doc_id": table["doc_id"],
                        "payload_json": [by_id[d]["payload_json"] for d in table["doc_id"].to_pylist()],
                        "n_chunks": chunks}, schema=PAYLOAD_UPDATE_SCHEMA))
        for name, spill in (("payload_updates", payload_updates), ("deleted", deleted), ("carried", carried)):
            store.write_buckets(name, spill)
    finally:
        for spill in (scan, payload_updates, deleted, carried):
            spill.close()
    n_duplicates = sum(len(v) for v in duplicates.values())
    for uri, wanted in duplicates.items():  # read marked, so the load pass dead-letters them whole
        lines[uri].extend(wanted)
    marker = store.commit({
        "summary": summary.as_dict(), "keep_lines": store.write_line_plans("lines", lines),
        "duplicate_lines": store.write_line_plans("duplicates", duplicates), "n_buckets": n_buckets,
        "read": scan.read, "rejected": dict(scan.rejected), "duplicates": n_duplicates}, run.files)
    log.info("incremental plan (documents): %s; %d duplicate ids",
             {k: v for k, v in summary.as_dict().items() if not k.startswith("points_")}, n_duplicates)
    return marker
