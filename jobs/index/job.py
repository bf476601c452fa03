"""`qbatch index` run: check the sink, the source and the collection guard before any work, take the
alias lock, then run the mode (full blue/green, incremental, append), write the report and the
dead-letter table, and decide the exit code. Thin on purpose: stages live in pipeline/, I/O in
connectors/, each phase in its own jobs/ module."""

from __future__ import annotations

import argparse
import logging
import time
from importlib.metadata import PackageNotFoundError, version

from qbatch.common.errors import ConfigError, GateFailedError, RejectRatioExceededError
from qbatch.jobs.runtime.exit_codes import ExitCode
from qbatch.jobs.index.config import IndexConfig
from qbatch.jobs.index.run_context import IndexRun
from qbatch.jobs.index.run_identity import config_fingerprint, refuse_reuse, resolve_run_id
from qbatch.jobs.runtime.logging_setup import configure_logging, register_secret

log = logging.getLogger("qbatch.index")


def qbatch_version() -> str:
    try:
        return version("qbatch")
    except PackageNotFoundError:  # running from a source tree
        return "0+unknown"


def register_config_secrets(cfg) -> None:
    for secret in (cfg.qdrant.api_key, cfg.source.storage.access_key_id, cfg.source.storage.secret_access_key,
                   cfg.source.storage.session_token):
        if secret is not None:
            register_secret(secret.get_secret_value())
    try:
        register_secret(cfg.qdrant.resolve_api_key())
    except ValueError as e:
        raise ConfigError(str(e)) from None


def collection_spec(cfg: IndexConfig, tokenizer):
    """What makes this run's vectors what they are; recorded on create, compared on every later run."""
    from qbatch.connectors.collection_guard import CollectionSpec

    dim = cfg.embed.dim or tokenizer.hidden_size
    if not 32 <= dim <= tokenizer.hidden_size:
        raise ConfigError(f"embed.dim={dim} is outside 32..{tokenizer.hidden_size} (the model's hidden size)")
    return CollectionSpec.build(
        dim=dim, distance=cfg.qdrant.distance, model=tokenizer.model_name, model_revision=tokenizer.digest,
        instructions={"document": cfg.embed.doc_instruction or "",
                      "query": tokenizer.effective_query_instruction(cfg.embed.query_instruction)},
        chunking=cfg.chunking.model_dump(), max_length=cfg.embed.max_length, qbatch_version=qbatch_version())


def guard_live(cfg: IndexConfig, client, live: str | None, spec) -> None:
    """Before any work: the new vectors must be comparable with what the alias serves."""
    from qbatch.connectors.collection_guard import read_spec, spec_differences

    if live is None:
        if client.collection_exists(cfg.qdrant.collection):
            raise ConfigError(f"qdrant.collection {cfg.qdrant.collection!r} names a plain collection, not an alias; "
                              "qbatch serves an alias in front of versioned collections: pick a new name")
        return
    diffs = spec_differences(read_spec(client, live) or {}, spec.as_metadata())
    if not diffs:
        return
    if cfg.gates.allow_model_change and cfg.run.mode == "full":
        log.warning("model change allowed (gates.allow_model_change): %s", "; ".join(diffs))
        return
    need = "run.mode = 'full' with gates.allow_model_change = true" if cfg.run.mode != "full" \
        else "gates.allow_model_change = true"
    raise GateFailedError(f"alias {cfg.qdrant.collection} serves {live}, built differently "
                          f"(field: live -> this run): {'; '.join(diffs)}. A deliberate migration needs {need}.")


def run_index(cfg: IndexConfig, args: argparse.Namespace | None = None) -> int:
    """Run `qbatch index` with a loaded config; `args` carries the CLI's flags (none = their defaults)."""
    args = args if args is not None else argparse.Namespace()
    configure_logging(getattr(args, "log_format", "text"), getattr(args, "log_level", "INFO"), cfg.run.run_id)
    register_config_secrets(cfg)
    from qbatch.connectors.qdrant_connection import connect, safe_target

    from qbatch.connectors.qdrant_lease import QdrantLease

    client = QdrantLease(cfg.qdrant, connect(cfg.qdrant))  # fail fast, before the corpus is read
    log.info("qdrant reachable at %s", safe_target(cfg.qdrant))
    try:
        return _run_with_client(cfg, args, client)
    finally:
        client.close()  # local mode allows one client per path: release it for the next run


def _run_with_client(cfg: IndexConfig, args, client) -> int:
    from qbatch.connectors.corpus_listing import list_corpus_files
    from qbatch.connectors.qdrant_aliases import alias_target
    from qbatch.pipeline.embedding_tokenizer import EmbeddingTokenizer

    files = list_corpus_files(cfg.source)
    log.info("source %s: %d files, %d bytes", cfg.source.uri, len(files), sum(f.size for f in files))
    run_id = resolve_run_id(cfg, files)
    if cfg.run.run_id is None:  # derived from the config and the listing: tag the log lines from here on
        configure_logging(getattr(args, "log_format", "text"), getattr(args, "log_level", "INFO"), run_id)
        log.info("run id %s (derived: mode, date, config and source listing)", run_id)
    try:  # the checkpoint's identity now; its tokenizer loads while Ray starts, checked before any write
        tokenizer = EmbeddingTokenizer.from_pretrained(cfg.embed.model, max_length=cfg.embed.max_length,
                                                       defer_loading=True)
    except (FileNotFoundError, ValueError) as e:  # a missing or unsupported model: a retry cannot help
        raise ConfigError(f"embed.model {cfg.embed.model!r}: {e}") from None
    from qbatch.jobs.index.tokenizer_check import TokenizerCheck

    check = TokenizerCheck(tokenizer, cfg.embed.model)
    spec = collection_spec(cfg, tokenizer)
    live = alias_target(client, cfg.qdrant.collection)
    guard_live(cfg, client, live, spec)
    run = IndexRun(cfg=cfg, run_id=run_id, client=client, files=files, spec=spec, tokenizer=tokenizer, live=live,
                   tokenizer_check=check)
    if getattr(args, "dry_run", False):
        from qbatch.jobs.index.dry_run import print_plan

        run.check_tokenizer()
        print_plan(run)
        return int(ExitCode.OK)
    return _run_locked(run, args)


def _run_locked(run: IndexRun, args) -> int:
    from qbatch.connectors.file_progress import FileProgressStore
    from qbatch.connectors.lock_heartbeat import LockHeartbeat
    from qbatch.connectors.run_lock import RunLock
    from qbatch.connectors.run_state import RunStateStore
    from qbatch.jobs.index.report import finish_report

    cfg = run.cfg
    run.state_store = RunStateStore(run.run_root, run.run_id, run.storage)
    previous = run.state_store.load()
    fingerprint = config_fingerprint(cfg)
    if previous is not None and previous.phase == "cleaned":
        refuse_reuse(run.run_id, previous, cfg.run.mode, fingerprint)
        print(f"run {run.run_id} already finished ({previous.mode} -> {previous.collection}); nothing to do")
        return int(ExitCode.OK)
    if previous is not None and previous.details.get("rolled_back"):
        raise ConfigError(f"run {run.run_id} was rolled back ({previous.details['rolled_back']}) and cannot resume; "
                          "start a new run (leave run.run_id unset, or give a new one)")
    with RunLock(run.out, run.alias, run.run_id, run.storage, ttl_s=cfg.run.lock_ttl_s) as lock, \
            LockHeartbeat(lock) as heartbeat:
        run.lock, run.heartbeat = lock, heartbeat
        if cfg.run.legacy_output_uri:
            from qbatch.connectors.manifest_store import adopt_legacy_manifest

            adopted = adopt_legacy_manifest(run.out, cfg.run.legacy_output_uri, run.alias, run.storage)
            if adopted:
                log.info("copied the live manifest %s from run.legacy_output_uri to %s", adopted, run.out)
        run.mode = previous.mode if previous else (cfg.run.mode if run.live else "full")
        if run.mode != cfg.run.mode:
            log.info("alias %s does not exist yet: this %s run builds it in full", run.alias, cfg.run.mode)
        run.collection = previous.collection if previous else (
            _versioned(run) if run.mode == "full" else run.live)
        if run.mode != "full":  # in place: the live collection takes what settings it can, or the run stops here
            from qbatch.connectors.collection_settings import reconcile_settings

            run.check_tokenizer()  # before this first write to the live collection
            run.report["settings_applied"] = reconcile_settings(run.client, cfg.qdrant, run.collection)
        run.state_store.begin(run.alias, run.mode, fingerprint, run.collection, requested_mode=cfg.run.mode)
        run.progress = FileProgressStore(run.run_root, run.run_id, run.storage)
        from qbatch.jobs.runtime.actor_pool import plan_and_wait
        from qbatch.jobs.runtime.ray_start import init_ray

        ray_start = time.perf_counter()
        init_ray(getattr(args, "ray_address", None))
        run.report["ray_start_s"] = time.perf_counter() - ray_start
        # Local mode allows one client per folder: one writer actor. A server takes `qdrant.parallel_writers`.
        writers = 1 if cfg.qdrant.is_local else cfg.qdrant.parallel_writers
        run.pools = plan_and_wait("embed", cfg.embed, cpu_stages=True, writers=writers)  # may wait for GPUs
        log.info("pools: %s", run.pools.describe())
        run.check_tokenizer()  # loaded meanwhile; before the first write
        error: BaseException | None = None
        from qbatch.connectors.dead_letter_writer import DeadLetterWriter

        dead_letter = DeadLetterWriter(run.run_root, run.run_id, run.storage)
        try:
            if run.mode == "full":
                from qbatch.jobs.index.full_mode import run_full

                run_full(run, dead_letter)
            else:
                from qbatch.jobs.index.incremental_mode import run_incremental

                run_incremental(run, dead_letter, append=run.mode == "append")
        except (GateFailedError, RejectRatioExceededError) as e:  # refusals: report them, then exit
            error = e
        finally:
            for table in run.progress.iter_dead_letter():
                dead_letter.write(table)
            dead_letter.close()
        report = finish_report(run, error, time.perf_counter() - run.started)
    if getattr(args, "metrics_pushgateway", None):
        from qbatch.jobs.runtime.metrics_push import push_run_metrics

        push_run_metrics(args.metrics_pushgateway, "qbatch_index", report)
    if error is not None:
        raise error
    return int(ExitCode.OK)


def _versioned(run: IndexRun) -> str:
    from qbatch.connectors.qdrant_aliases import versioned_name

    return versioned_name(run.alias, run.run_id)
