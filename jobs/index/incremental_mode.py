"""`run.mode = "incremental"` (and `"append"`): refresh the live collection in place.

1. Diff the corpus against the live manifest (hashes only) and gate what can be gated before writing
   anything: deletions, shrinkage, and golden queries against the live collection with the
   to-be-deleted documents filtered out. The live index serves search meanwhile, so a truncated
   export must never delete it away.
2. Embed and upsert only new and changed documents; `set_payload` documents whose payload alone
   changed; delete vanished documents' points and the chunks shortened documents lost, last. Every
   write first saves the before-images of the points it changes (connectors/undo_log.py).
3. Run the gates again. A failed gate restores the before-images and removes the points the run
   added, so the live collection is what it was; otherwise the new manifest becomes CURRENT.
Append runs never delete."""

from __future__ import annotations

import json
import logging

from qbatch.common.errors import GateFailedError, RejectRatioExceededError
from qbatch.jobs.index.gates import GateBook, embed_queries_remote, golden_recall_of, load_golden
from qbatch.jobs.index.dataset_plan import ReadPlan
from qbatch.jobs.index.incremental_plan import plan_incremental
from qbatch.jobs.index.load_pass import run_load_pass
from qbatch.jobs.index.run_context import IndexRun

log = logging.getLogger("qbatch.index")


def run_incremental(run: IndexRun, dead_letter, append: bool) -> None:
    """Refresh the live collection in place; a refusal after this run (or an earlier attempt of it)
    wrote anything puts the live collection back first."""
    from qbatch.connectors.undo_log import UndoLog

    undo = UndoLog(run.run_folder, run.collection, run.run_id, run.storage)
    try:
        _refresh(run, dead_letter, append, undo)
    except (GateFailedError, RejectRatioExceededError) as e:
        if undo.has_writes(run.client):
            undo_in_place(run, undo, f"{run.collection}@{run.run_id}", reason=f"refused after writing: {e}")
        raise


def _refresh(run: IndexRun, dead_letter, append: bool, undo) -> None:
    from qbatch.connectors.manifest_store import ManifestReader, read_current, write_current
    from qbatch.pipeline.validation_gates import count_parity, golden_gate

    cfg, client, coll = run.cfg, run.client, run.collection
    old_key = read_current(run.out, run.alias, run.storage)
    if old_key is None:
        raise GateFailedError(f"alias {run.alias} has no committed manifest under {run.out}; "
                              "build it once with run.mode = 'full'")
    old = ManifestReader(run.out, run.alias, old_key, storage=run.storage)
    new_key = f"{coll}@{run.run_id}"
    golden = load_golden(cfg)
    vectors = embed_queries_remote(cfg, list(golden), run.spec.dim, cfg.embed.query_instruction) if golden else None
    state = run.state_store.load()
    # Every attempt runs the plan the first one persisted (a run loaded by an older qbatch may have none).
    plan = plan_incremental(run, old, append, scan=not state.reached("loaded"))
    if plan is not None:
        run.files = plan.files
        run.report["plan"] = plan
        for table in plan.rejects():  # this attempt's dead-letter table starts afresh
            dead_letter.write(table)

    if not state.reached("loaded"):
        try:
            golden_before = gate_before_writing(run, plan, old, golden, vectors, append)
        except (GateFailedError, RejectRatioExceededError):
            dead_letter_duplicates(run, plan, dead_letter)  # they would have been, had the load pass run
            plan.store.discard()  # nothing was written: a retry with a fixed source plans afresh
            raise
        files = [f for f in run.files if f.uri in plan.keep_lines]
        load = run_load_pass(run, files, ReadPlan(plan.keep_lines, plan.duplicate_lines), undo=undo)
        run.report["load"] = load
        run.check_lock()
        updated = apply_payload_updates(run, plan, undo)
        changed = plan.summary.new_docs + plan.summary.changed + plan.summary.payload_only + plan.summary.deleted
        if not changed:
            log.info("nothing changed: no embedding, no writes")
            run.state_store.advance("loaded", manifest=old_key, golden_before=golden_before, updated=0)
        else:
            commit_manifest(run, new_key, old.n_buckets, plan)
            deleted = apply_deletions(run, old, ManifestReader(run.out, run.alias, new_key, storage=run.storage), undo)
            run.state_store.advance("loaded", manifest=new_key, golden_before=golden_before,
                                    updated=updated, deleted_points=deleted)
    state = run.state_store.load()
    details = state.details
    run.report["incremental"] = {"payload_updated_docs": details.get("updated", 0),
                                 "deleted_points": details.get("deleted_points", 0)}
    if "load" not in run.report:  # resumed after loading: the totals come from the progress markers
        run.report["load"] = run_load_pass(run, [])
    key = details["manifest"]
    summary = ManifestReader(run.out, run.alias, key, storage=run.storage).summary()

    gates = GateBook()
    points = client.count(coll, exact=True).count
    gates.add(count_parity(points, run.report["load"].totals["points_upserted"], summary["points"]))
    if golden:
        after = golden_recall_of(client, coll, golden, vectors, cfg.gates.golden_k)
        gates.add(golden_gate(after, details.get("golden_before"), cfg.gates.golden_min_recall,
                              cfg.gates.golden_max_drop))
    run.report["gates"] = run.report.get("gates", []) + gates.as_report()
    gates.enforce(f"collection {coll} was updated in place, then restored from the run's before-images; "
                  f"its manifest {key} is not made CURRENT")
    run.state_store.advance("gated")
    run.state_store.advance("switched")  # in place: the alias already points here
    write_current(run.out, run.alias, key, run.storage)
    run.state_store.advance("manifest_committed")
    drop_old_manifests(run, keep_key=key)
    run.state_store.advance("cleaned")


def gate_before_writing(run: IndexRun, plan, old, golden, vectors, append: bool) -> float | None:
    """The gates that can refuse before the live collection changes: the diff's projection, the reject
    ratio and, when documents go away, golden recall without them. Returns golden recall of the live
    collection as the first attempt found it, before any write (recorded, so a resumed attempt that
    may already have written never measures it again)."""
    from qbatch.pipeline.manifest_diff import gate_projection

    cfg = run.cfg
    failures = [] if append else gate_projection(plan.summary, old.summary()["docs"], cfg.gates.max_delete_ratio,
                                                 cfg.gates.min_ratio)  # an append never shrinks or deletes
    if failures:
        run.report["gates"] = [{"gate": "diff_projection", "passed": False, "message": m} for m in failures]
        raise GateFailedError("refused before writing anything: " + "; ".join(failures))
    run.check_reject_ratio(plan.read, sum(plan.rejected.values()) + plan.duplicates,
                           "refused before writing anything to the live collection")
    details = run.state_store.load().details
    if "golden_before" in details:  # an earlier attempt measured it and passed the golden gate below
        return details["golden_before"]
    golden_before = golden_recall_of(run.client, run.collection, golden, vectors, cfg.gates.golden_k) \
        if golden else None
    if golden and plan.summary.deleted:
        gate_golden_before_writing(run, plan, golden, vectors, golden_before)
    run.state_store.advance("started", golden_before=golden_before)
    return golden_before


def dead_letter_duplicates(run: IndexRun, plan, dead_letter) -> None:
    """Dead-letter, with their original rows, the records the plan found repeating an earlier id:
    the load pass does that as it reads them, but a refused run never gets there."""
    from qbatch.jobs.index.corpus_scan import scan_corpus

    files = [f for f in run.files if f.uri in plan.duplicate_lines]
    if files:
        scan_corpus(run.cfg, files, run.spec, run.pools, 1, dead_letter=dead_letter, run_id=run.run_id,
                    read=ReadPlan(plan.duplicate_lines, plan.duplicate_lines)).close()


def commit_manifest(run: IndexRun, key: str, n_buckets: int, plan) -> None:
    """The new manifest: the rows the plan carries over, then those of every unit the load pass wrote."""
    from qbatch.connectors.manifest_store import ManifestWriter

    with ManifestWriter(run.out, run.alias, key, n_buckets=n_buckets, storage=run.storage) as manifest:
        for i in range(plan.carried.n_buckets):
            manifest.add(plan.carried.read(i))
        for table in run.progress.iter_manifest_rows():
            manifest.add(table)
        manifest.commit()


def gate_golden_before_writing(run: IndexRun, plan, golden, vectors, live_recall: float) -> None:
    """Golden recall of the live collection as it will be once the deletions land: refused now, before
    any write, rather than restored later."""
    from qbatch.pipeline.validation_gates import golden_gate

    cfg = run.cfg
    projected = golden_recall_of(run.client, run.collection, golden, vectors, cfg.gates.golden_k,
                                 without=plan.deleted_doc_ids())
    result = golden_gate(projected, live_recall, cfg.gates.golden_min_recall, cfg.gates.golden_max_drop)
    entry = {"gate": "golden_recall_after_deletions", "passed": result.passed, **result.figures,
             "message": result.message}
    run.report["gates"] = [entry]
    if not result.passed:
        raise GateFailedError(f"refused before writing anything: golden recall without the "
                              f"{plan.summary.deleted} documents this run deletes: {result.message}")


def undo_in_place(run: IndexRun, undo, manifest_key: str | None, reason: str) -> None:
    """Put the live collection back as it was before this run and mark the run as rolled back, so it
    never resumes. Its uncommitted manifest is dropped."""
    from qbatch.connectors.manifest_store import delete_manifest, read_current
    from qbatch.connectors.qdrant_writer import PointWriter

    result = undo.restore(run.client, PointWriter.from_config(run.client, run.cfg.qdrant, run.collection))
    run.report["undo"] = {"reason": reason, "restored_points": result.restored_points,
                          "removed_points": result.removed_points}
    log.warning("%s: restored %d before-images and removed %d points this run added in %s", reason,
                result.restored_points, result.removed_points, run.collection)
    if manifest_key and manifest_key != read_current(run.out, run.alias, run.storage):
        delete_manifest(run.out, run.alias, manifest_key, run.storage)
    run.state_store.advance(run.state_store.load().phase, rolled_back=reason, undo=run.report["undo"])


def apply_payload_updates(run: IndexRun, plan, undo=None) -> int:
    """set_payload on every chunk of documents whose payload alone changed; no re-embedding."""
    from qbatch.connectors.point_ids import point_id
    from qbatch.connectors.qdrant_writer import PointWriter

    writer = PointWriter(run.client, run.collection, batch_size=run.cfg.qdrant.upsert_batch_size,
                         max_retries=run.cfg.qdrant.max_retries, undo=undo)
    docs = 0
    for i in range(plan.payload_updates.n_buckets):
        ops = []
        for row in plan.payload_updates.read(i).to_pylist():
            values = json.loads(row["payload_json"]) if row["payload_json"] else {}
            payload = {k: values.get(k) for k in run.cfg.columns.payload}
            payload["payload_hash"] = _payload_hash(values)
            payload["run_id"] = run.run_id
            ops.append((payload, [point_id(row["doc_id"], c) for c in range(row["n_chunks"])]))
            docs += 1
        if ops:
            writer.set_payload_many(ops)
    return docs


def _payload_hash(values: dict) -> str:
    from qbatch.pipeline.content_hashing import payload_hash

    return payload_hash(values)


def apply_deletions(run: IndexRun, old, new, undo=None) -> int:
    """Delete, bucket by bucket, the points the new manifest no longer has. Idempotent."""
    from qbatch.connectors.point_ids import point_id
    from qbatch.connectors.qdrant_writer import PointWriter
    from qbatch.pipeline.manifest_diff import diff_bucket, points_to_delete

    writer = PointWriter(run.client, run.collection, batch_size=run.cfg.qdrant.upsert_batch_size,
                         max_retries=run.cfg.qdrant.max_retries, undo=undo)
    total = 0
    for i in range(old.n_buckets):
        ids = [point_id(d, c) for d, c in points_to_delete(diff_bucket(old.read_bucket(i), new.read_bucket(i)))]
        if ids:
            writer.delete_points(ids)
            total += len(ids)
    return total


def drop_old_manifests(run: IndexRun, keep_key: str) -> None:
    """Keep the newest `run.keep` manifests of this collection (CURRENT included)."""
    from qbatch.connectors.manifest_store import delete_manifest, list_manifests

    mine = sorted((k for k in list_manifests(run.out, run.alias, run.storage)
                   if k == run.collection or k.startswith(f"{run.collection}@")), reverse=True)
    for key in [k for k in mine if k != keep_key][max(0, run.cfg.run.keep - 1):]:
        delete_manifest(run.out, run.alias, key, run.storage)
