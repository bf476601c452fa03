"""`qbatch index status` and `qbatch index rollback`: what an operator needs at 3 a.m.
Status lists the alias's kept collections (points, model, run id, which is live). Rollback reads the
alias's newest run first: if it is an in-place run (incremental, append) that never finished, it
undoes it from its before-images (connectors/undo_log.py) and marks it so that it never resumes;
otherwise it points the alias at the previous kept collection and restores that collection's
manifest as CURRENT."""

from __future__ import annotations

from typing import TextIO

from qbatch.common.errors import ConfigError
from qbatch.jobs.runtime.exit_codes import ExitCode
from qbatch.jobs.index.config import IndexAdminConfig


def run_admin(cfg: IndexAdminConfig, args) -> int:
    import sys

    from qbatch.connectors.qdrant_connection import connect
    from qbatch.jobs.runtime.logging_setup import configure_logging

    configure_logging(getattr(args, "log_format", "text"), getattr(args, "log_level", "WARNING"))
    client = connect(cfg.qdrant)
    try:
        return show_status(cfg, client, sys.stdout) if args.action == "status" else rollback(cfg, client, sys.stdout)
    finally:
        client.close()


def describe_collections(cfg: IndexAdminConfig, client) -> list[dict]:
    from qbatch.connectors.collection_guard import read_spec
    from qbatch.connectors.qdrant_aliases import alias_target
    from qbatch.jobs.index.full_mode import collections_newest_first

    alias = cfg.qdrant.collection
    live = alias_target(client, alias)
    rows = []
    for name in collections_newest_first(client, alias):
        spec = read_spec(client, name) or {}
        rows.append({"collection": name, "live": name == live, "points": client.count(name, exact=True).count,
                     "model": spec.get("model"), "dim": spec.get("dim"), "run_id": spec.get("run_id"),
                     "created_at": spec.get("created_at")})
    return rows


def show_status(cfg: IndexAdminConfig, client, out: TextIO) -> int:
    from qbatch.connectors.manifest_store import read_current

    rows = describe_collections(cfg, client)
    current = read_current(cfg.run.output_uri, cfg.qdrant.collection, cfg.storage)
    out.write(f"alias {cfg.qdrant.collection}: {len(rows)} kept collection(s); manifest CURRENT = {current}\n")
    out.write(f"{'':2}{'collection':<40} {'points':>9}  {'dim':>5}  {'run_id':<24} {'created_at':<26} model\n")
    for r in rows:
        out.write(f"{'*' if r['live'] else ' ':2}{r['collection']:<40} {r['points']:>9}  {str(r['dim']):>5}  "
                  f"{str(r['run_id']):<24} {str(r['created_at']):<26} {r['model']}\n")
    if not rows:
        out.write("  (none: run `qbatch index` once to build it)\n")
    return int(ExitCode.OK)


def unfinished_in_place_run(cfg: IndexAdminConfig):
    """The alias's newest run, when it is an in-place run that stopped before committing its manifest
    and was not rolled back yet; else None."""
    from qbatch.connectors.object_store import join_uri
    from qbatch.connectors.run_state import list_run_states

    states = list_run_states(join_uri(cfg.run.output_uri, cfg.qdrant.collection), cfg.storage)
    newest = states[-1] if states else None
    if newest is None or newest.mode not in ("incremental", "append") or newest.details.get("rolled_back") \
            or newest.reached("manifest_committed"):
        return None
    return newest


def undo_unfinished(cfg: IndexAdminConfig, client, state, out: TextIO) -> int:
    """Restore the before-images of an unfinished in-place run, under the alias lock."""
    from qbatch.connectors.object_store import join_uri
    from qbatch.connectors.qdrant_writer import PointWriter
    from qbatch.connectors.run_lock import RunLock
    from qbatch.connectors.run_state import RunStateStore
    from qbatch.connectors.undo_log import UndoLog

    alias, root = cfg.qdrant.collection, join_uri(cfg.run.output_uri, cfg.qdrant.collection)
    with RunLock(cfg.run.output_uri, alias, f"rollback-{state.run_id}", cfg.storage):
        undo = UndoLog(join_uri(root, "runs", state.run_id), state.collection, state.run_id, cfg.storage)
        result = undo.restore(client, PointWriter.from_config(client, cfg.qdrant, state.collection))
        store = RunStateStore(root, state.run_id, cfg.storage)
        store.advance(store.load().phase, rolled_back="qbatch index rollback",
                      undo={"restored_points": result.restored_points, "removed_points": result.removed_points})
    out.write(f"alias {alias}: undid unfinished {state.mode} run {state.run_id} in {state.collection}: restored "
              f"{result.restored_points} before-images, removed {result.removed_points} points it added; "
              "the run will not resume\n")
    return int(ExitCode.OK)


def rollback(cfg: IndexAdminConfig, client, out: TextIO) -> int:
    from qbatch.connectors.manifest_store import ManifestReader, list_manifests, write_current
    from qbatch.connectors.qdrant_aliases import switch_alias

    unfinished = unfinished_in_place_run(cfg)
    if unfinished is not None:
        return undo_unfinished(cfg, client, unfinished, out)

    rows = describe_collections(cfg, client)
    names = [r["collection"] for r in rows]
    live = next((r["collection"] for r in rows if r["live"]), None)
    if live is None or names.index(live) + 1 >= len(names):
        raise ConfigError(f"alias {cfg.qdrant.collection}: no older kept collection to roll back to "
                              f"(kept: {', '.join(names) or 'none'})")
    target = names[names.index(live) + 1]
    alias, out_uri, storage = cfg.qdrant.collection, cfg.run.output_uri, cfg.storage
    keys = [k for k in list_manifests(out_uri, alias, storage) if k == target or k.startswith(f"{target}@")]
    committed = [k for k in keys if ManifestReader(out_uri, alias, k, storage=storage).exists()]
    switch_alias(client, alias, target)
    if committed:
        latest = max(committed, key=lambda k: ManifestReader(out_uri, alias, k, storage=storage).summary()
                     .get("committed_at", ""))
        write_current(out_uri, alias, latest, storage)
    out.write(f"alias {alias}: {live} -> {target}" + (f"; manifest CURRENT = {latest}\n" if committed else
                                                     "; no committed manifest found (next run should be full)\n"))
    return int(ExitCode.OK)
