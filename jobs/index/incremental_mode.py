"""`run.mode = "incremental"` (and `"append"`): refresh the live collection in place.

1. Diff the corpus against the live manifest (hashes only) and gate the diff before writing anything:
   the live index serves search meanwhile, so a truncated export must never delete it away.
2. Embed and upsert only new and changed documents; `set_payload` documents whose payload alone
   changed; delete vanished documents' points and the chunks shortened documents lost, last.
3. Run the gates again, then make the new manifest CURRENT. Append runs never delete."""

from __future__ import annotations

import json
import logging

from common.errors import GateFailedError
from jobs.index.gates import GateBook, embed_queries_remote, golden_recall_of, load_golden
from jobs.index.incremental_plan import scan_and_plan
from jobs.index.load_pass import run_load_pass
from jobs.index.run_context import IndexRun

log = logging.getLogger("qbatch.index")


def run_incremental(run: IndexRun, dead_letter, append: bool) -> None:
    from connectors.manifest_store import ManifestReader, ManifestWriter, read_current, write_current
    from pipeline.manifest_diff import gate_projection
    from pipeline.validation_gates import count_parity, golden_gate

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

    if not state.reached("loaded"):
        with ManifestWriter(run.out, run.alias, new_key, n_buckets=old.n_buckets, storage=run.storage) as manifest:
            plan = scan_and_plan(cfg, run.files, run.spec, run.pools, run.run_id, old, dead_letter, manifest, append)
            try:
                run.report["plan"] = plan
                failures = gate_projection(plan.summary, old.summary()["docs"], cfg.gates.max_delete_ratio,
                                           cfg.gates.min_ratio)
                if append:  # an append only adds; shrinking is impossible and deleting never happens
                    failures = []
                if failures:
                    run.report["gates"] = [{"gate": "diff_projection", "passed": False, "message": m}
                                           for m in failures]
                    raise GateFailedError("refused before writing anything: " + "; ".join(failures))
                run.check_reject_ratio(plan.read, sum(plan.rejected.values()),
                                       "refused before writing anything to the live collection")
                golden_before = golden_recall_of(client, coll, golden, vectors, cfg.gates.golden_k) \
                    if golden else None
                files = [f for f in run.files if f.uri in plan.keep_lines]
                load = run_load_pass(cfg, client, coll, files, run.spec, run.run_id, run.pools, run.progress,
                                     keep_lines=plan.keep_lines, heartbeat=run.refresh_lock)
                run.report["load"] = load
                run.refresh_lock(every_s=0)
                updated = apply_payload_updates(run, plan)
                changed = plan.summary.new_docs + plan.summary.changed + plan.summary.payload_only \
                    + plan.summary.deleted
                if not changed:
                    log.info("nothing changed: no embedding, no writes")
                    run.state_store.advance("loaded", manifest=old_key, golden_before=golden_before, updated=0)
                else:
                    for table in run.progress.iter_manifest_rows():
                        manifest.add(table)
                    manifest.commit()
                    deleted = apply_deletions(run, old, ManifestReader(run.out, run.alias, new_key,
                                                                       storage=run.storage))
                    run.state_store.advance("loaded", manifest=new_key, golden_before=golden_before,
                                            updated=updated, deleted_points=deleted)
            finally:
                plan.payload_updates.close()
    state = run.state_store.load()
    details = state.details
    run.report["incremental"] = {"payload_updated_docs": details.get("updated", 0),
                                 "deleted_points": details.get("deleted_points", 0)}
    if "load" not in run.report:  # resumed after loading: the totals come from the progress markers
        run.report["load"] = run_load_pass(cfg, client, coll, [], run.spec, run.run_id, run.pools, run.progress)
    key = details["manifest"]
    summary = ManifestReader(run.out, run.alias, key, storage=run.storage).summary()

    gates = GateBook()
    points = client.count(coll, exact=True).count
    gates.add(count_parity(points, run.report["load"].totals["points_upserted"], summary["points"]))
    if golden:
        after = golden_recall_of(client, coll, golden, vectors, cfg.gates.golden_k)
        gates.add(golden_gate(after, details.get("golden_before"), cfg.gates.golden_min_recall,
                              cfg.gates.golden_max_drop))
    run.report["gates"] = gates.as_report()
    gates.enforce(f"collection {coll} was updated in place but its manifest {key} is not made CURRENT")
    run.state_store.advance("gated")
    run.state_store.advance("switched")  # in place: the alias already points here
    write_current(run.out, run.alias, key, run.storage)
    run.state_store.advance("manifest_committed")
    drop_old_manifests(run, keep_key=key)
    run.state_store.advance("cleaned")


def apply_payload_updates(run: IndexRun, plan) -> int:
    """set_payload on every chunk of documents whose payload alone changed; no re-embedding."""
    from connectors.point_ids import point_id
    from connectors.qdrant_writer import PointWriter

    writer = PointWriter(run.client, run.collection, batch_size=run.cfg.qdrant.upsert_batch_size,
                         max_retries=run.cfg.qdrant.max_retries)
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
    from pipeline.content_hashing import payload_hash

    return payload_hash(values)


def apply_deletions(run: IndexRun, old, new) -> int:
    """Delete, bucket by bucket, the points the new manifest no longer has. Idempotent."""
    from connectors.point_ids import point_id
    from connectors.qdrant_writer import PointWriter
    from pipeline.manifest_diff import diff_bucket, points_to_delete

    writer = PointWriter(run.client, run.collection, batch_size=run.cfg.qdrant.upsert_batch_size,
                         max_retries=run.cfg.qdrant.max_retries)
    total = 0
    for i in range(old.n_buckets):
        ids = [point_id(d, c) for d, c in points_to_delete(diff_bucket(old.read_bucket(i), new.read_bucket(i)))]
        if ids:
            writer.delete_points(ids)
            total += len(ids)
    return total


def drop_old_manifests(run: IndexRun, keep_key: str) -> None:
    """Keep the newest `run.keep` manifests of this collection (CURRENT included)."""
    from connectors.manifest_store import delete_manifest, list_manifests

    mine = sorted((k for k in list_manifests(run.out, run.alias, run.storage)
                   if k == run.collection or k.startswith(f"{run.collection}@")), reverse=True)
    for key in [k for k in mine if k != keep_key][max(0, run.cfg.run.keep - 1):]:
        delete_manifest(run.out, run.alias, key, run.storage)
