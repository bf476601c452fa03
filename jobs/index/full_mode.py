"""`run.mode = "full"`: blue/green rebuild. Scan the corpus for duplicate ids (hashes only), load a new
collection `{alias}__{run_id}` with indexing off, turn indexing on and wait for green, run the gates, and only then switch the alias in one call.
Old collections beyond `run.keep` are deleted after a successful switch. Every phase is safe to redo."""

from __future__ import annotations

import logging
import time

from qbatch.common.errors import GateFailedError
from qbatch.jobs.index.gates import GateBook, embed_queries_remote, golden_recall_of, load_golden
from qbatch.jobs.index.dataset_plan import ReadPlan
from qbatch.jobs.index.full_plan import plan_full
from qbatch.jobs.index.load_pass import run_load_pass
from qbatch.jobs.index.run_context import IndexRun

log = logging.getLogger("qbatch.index")


def wait_until_green(client, collection: str, timeout_s: float, poll_s: float = 1.0) -> None:
    """Indexing is done when the collection is green and its optimizers report ok; small segments are
    never indexed, so this does not wait for every vector."""
    deadline = time.monotonic() + timeout_s
    while True:
        info = client.get_collection(collection)
        status = str(getattr(info.status, "value", info.status)).lower()
        optimizer = getattr(info.optimizer_status, "value", info.optimizer_status)
        if status == "green" and str(optimizer).lower() == "ok":
            return
        if time.monotonic() > deadline:
            raise GateFailedError(f"collection {collection} is {status} (optimizers: {optimizer}) after "
                                  f"{timeout_s:.0f}s; the alias was not switched (raise gates.green_timeout_s?)")
        time.sleep(poll_s)


def run_full(run: IndexRun, dead_letter) -> None:
    from qbatch.connectors.collection_guard import ensure_collection, finish_bulk_load
    from qbatch.connectors.manifest_store import ManifestReader, ManifestWriter, read_current, write_current
    from qbatch.connectors.qdrant_aliases import switch_alias
    from qbatch.pipeline.validation_gates import count_parity, golden_gate, minimum_size

    cfg, client, coll = run.cfg, run.client, run.collection
    state = run.state_store.load()
    if not state.reached("loaded"):
        ensure_collection(client, cfg.qdrant, coll, run.creation_spec(), bulk_load=True)
    plan = plan_full(run)  # duplicates decided before embedding; read back on a resume
    run.report["duplicate_plan"] = plan
    run.files = plan.files  # a resumed attempt works from the listing its plan was made from
    if not state.reached("loaded"):
        load = run_load_pass(run, run.files, ReadPlan(duplicate_lines=plan.duplicate_lines))
    else:  # loaded by an earlier attempt: the totals come from the unit markers
        load = run_load_pass(run, run.files)
    run.report["load"] = load
    run.check_lock()
    run.check_reject_ratio(load.totals["read"], sum(load.rejected.values()),
                           f"collection {coll} is kept for inspection and alias {run.alias} was not switched")
    if not state.reached("loaded"):
        finish_bulk_load(client, cfg.qdrant, coll)
        wait_until_green(client, coll, cfg.gates.green_timeout_s)
        with ManifestWriter(run.out, run.alias, coll, storage=run.storage) as manifest:
            for table in run.progress.iter_manifest_rows():
                manifest.add(table)
            summary = manifest.commit()
        state = run.state_store.advance("loaded", manifest=coll, manifest_summary=summary)
    summary = ManifestReader(run.out, run.alias, coll, storage=run.storage).summary()

    gates = GateBook()
    points = client.count(coll, exact=True).count
    gates.add(count_parity(points, load.totals["points_upserted"], summary["points"]))
    live_key = read_current(run.out, run.alias, run.storage) if run.live else None
    live_docs = ManifestReader(run.out, run.alias, live_key, storage=run.storage).summary()["docs"] \
        if live_key else (client.count(run.live, exact=True).count if run.live else None)
    gates.add(minimum_size(summary["docs"], live_docs, cfg.gates.min_ratio))
    golden = load_golden(cfg)
    if golden:
        vectors = embed_queries_remote(cfg, list(golden), run.spec.dim, cfg.embed.query_instruction)
        new_recall = golden_recall_of(client, coll, golden, vectors, cfg.gates.golden_k)
        same_model = run.live is not None and not cfg.gates.allow_model_change
        live_recall = golden_recall_of(client, run.live, golden, vectors, cfg.gates.golden_k) if same_model else None
        gates.add(golden_gate(new_recall, live_recall, cfg.gates.golden_min_recall, cfg.gates.golden_max_drop))
    run.report["gates"] = gates.as_report()
    gates.enforce(f"collection {coll} is kept for inspection and alias {run.alias} still points at {run.live}")
    run.state_store.advance("gated")

    previous = switch_alias(client, run.alias, coll)
    run.state_store.advance("switched", previous=previous)
    log.info("alias %s -> %s (was %s)", run.alias, coll, previous)
    write_current(run.out, run.alias, coll, run.storage)
    run.state_store.advance("manifest_committed")
    run.report["dropped_collections"] = drop_beyond_keep(run)
    run.state_store.advance("cleaned")


def collections_newest_first(client, alias: str) -> list[str]:
    """The alias's `{alias}__*` collections, newest first by the creation time recorded in their spec."""
    from qbatch.connectors.collection_guard import read_spec
    from qbatch.connectors.qdrant_aliases import collections_for_alias

    names = collections_for_alias(client, alias)
    created = {n: (read_spec(client, n) or {}).get("created_at", "") for n in names}
    return sorted(names, key=lambda n: (created[n], n), reverse=True)


def drop_beyond_keep(run: IndexRun) -> list[str]:
    """Delete collections beyond the newest `run.keep` (the live one always stays) and their manifests."""
    from qbatch.connectors.manifest_store import delete_manifest, list_manifests
    from qbatch.connectors.qdrant_aliases import alias_target, delete_collections

    live = alias_target(run.client, run.alias)
    ordered = [n for n in collections_newest_first(run.client, run.alias) if n != live]
    stale = ordered[max(0, run.cfg.run.keep - 1):]
    dropped = delete_collections(run.client, stale, protect=run.alias)
    keys = list_manifests(run.out, run.alias, run.storage)
    for name in dropped:
        for key in keys:
            if key == name or key.startswith(f"{name}@"):
                delete_manifest(run.out, run.alias, key, run.storage)
    if dropped:
        log.info("dropped collections beyond keep=%d: %s", run.cfg.run.keep, ", ".join(dropped))
    return dropped
