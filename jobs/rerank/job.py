"""`qbatch rerank` run: check config, secrets, sources and models before any work (a missing log, corpus
or model is an error naming its field), take the run date's lock, then run the phases
(jobs/rerank/run_phases.py: prepare, gate, score, commit, report) as Ray Data plans."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import time

from qbatch.common.errors import ConfigError, RejectRatioExceededError, SourceError
from qbatch.jobs.runtime.exit_codes import ExitCode
from qbatch.jobs.runtime.logging_setup import configure_logging, register_secret
from qbatch.jobs.rerank.config import RerankConfig
from qbatch.pipeline.query_redaction import QueryRedactor

log = logging.getLogger("qbatch.rerank")


def build_redactor(cfg: RerankConfig) -> QueryRedactor:
    if not cfg.output.redact_queries:
        return QueryRedactor(None)
    key = os.environ.get(cfg.output.hmac_key_env)
    if not key:
        raise ConfigError(f"output.redact_queries is on but the environment variable {cfg.output.hmac_key_env} "
                          "(output.hmac_key_env) is unset or empty; set it to the HMAC key")
    register_secret(key)
    return QueryRedactor(key.encode("utf-8"))


def _register_secrets(cfg: RerankConfig) -> list[str]:
    values = []
    for storage in (cfg.queries.storage, cfg.output.storage,
                    cfg.documents.corpus.storage if cfg.documents.corpus else None):
        if storage is not None:
            values += [s.get_secret_value() for s in (storage.access_key_id, storage.secret_access_key,
                                                      storage.session_token) if s is not None]
    try:
        values.append(cfg.qdrant.resolve_api_key())
        if cfg.output.catalog is not None:  # catalog tokens and keys, from their environment variables
            values += list(cfg.output.catalog.resolved_secrets().values())
    except ValueError as e:
        raise ConfigError(str(e)) from None
    for v in values:
        register_secret(v)
    return [v for v in values if v]


def _check_local_model(name: str) -> None:
    """A reranker given as a local path must exist before any work (hub ids resolve on the workers)."""
    from qbatch.pipeline.encoder_checkpoint import _looks_like_path, resolve_checkpoint

    if _looks_like_path(name) or os.path.exists(os.path.expanduser(name)):
        try:
            resolve_checkpoint(name)
        except FileNotFoundError as e:
            raise ConfigError(f"reranker.model: {e}") from None


def run_rerank(cfg: RerankConfig, args: argparse.Namespace | None = None) -> int:
    """Run `qbatch rerank` with a loaded config; returns the exit code (raises QBatchError on failure).
    `args` carries the CLI's flags (none = their defaults)."""
    args = args if args is not None else argparse.Namespace()
    started = time.perf_counter()
    run_date = cfg.output.run_date or dt.datetime.now(dt.timezone.utc).date()
    run_id = cfg.run.run_id or run_date.strftime("%Y%m%d")
    configure_logging(getattr(args, "log_format", "text"), getattr(args, "log_level", "INFO"), run_id)
    redactor = build_redactor(cfg)
    secrets = _register_secrets(cfg) + ([os.environ[cfg.output.hmac_key_env]] if redactor.enabled else [])
    _check_local_model(cfg.reranker.model)
    from qbatch.connectors.corpus_listing import list_corpus_files

    files = list_corpus_files(cfg.queries)
    if not files:
        raise SourceError(f"queries.uri {cfg.queries.uri} holds no log files (glob {cfg.queries.glob!r})")
    log.info("query log %s: %d files, %d bytes", cfg.queries.uri, len(files), sum(f.size for f in files))
    # A missing or empty corpus is a source error before any work, naming documents.corpus.
    corpus_files = list_corpus_files(cfg.documents.corpus) if cfg.documents.source == "corpus" else []
    for message in cfg.deprecated_fields():
        log.warning(message)
    needs_qdrant = cfg.documents.source == "qdrant" or cfg.candidates.retrieve_top_k > 0
    client = None
    if needs_qdrant:
        from qbatch.connectors.qdrant_connection import connect, safe_target

        client = connect(cfg.qdrant)
        log.info("qdrant reachable at %s", safe_target(cfg.qdrant))
    try:
        if getattr(args, "dry_run", False):
            from qbatch.jobs.rerank.dry_run import print_plan

            print_plan(cfg, files, client, run_date, run_id)
            return int(ExitCode.OK)
        import ray

        from qbatch.jobs.runtime.ray_start import init_ray

        init_ray(getattr(args, "ray_address", None))
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        retrieval = None
        if cfg.candidates.retrieve_top_k > 0:
            from qbatch.jobs.rerank.retrieval import retrieval_plan

            retrieval = retrieval_plan(client, cfg, cpus)
    finally:
        if client is not None:
            client.close()  # local mode allows one process per folder: the plan's actor owns it from here
    run = _new_run(cfg, run_id, run_date, files, corpus_files, redactor, cpus, retrieval)
    if cfg.output.format == "iceberg":
        run.iceberg = open_iceberg(cfg)  # the tables exist and hold the contract, or a ConfigError names the column
    run.stages["startup"] = time.perf_counter() - started
    report = _run_locked(run, args, secrets, started)
    if getattr(args, "metrics_pushgateway", None):
        from qbatch.jobs.runtime.metrics_push import push_run_metrics

        push_run_metrics(args.metrics_pushgateway, "qbatch_rerank", report, secrets)
    if report["exit"]["code"] == ExitCode.REJECT_RATIO_EXCEEDED:
        raise RejectRatioExceededError(report["exit"]["reason"])
    return int(ExitCode.OK)


def _new_run(cfg: RerankConfig, run_id, run_date, files, corpus_files, redactor, cpus, retrieval):
    from qbatch.connectors.rerank_staging import RerankStaging, staging_uri
    from qbatch.jobs.rerank.run_fingerprint import run_fingerprint
    from qbatch.jobs.rerank.run_phases import RerankRun
    from qbatch.pipeline.encoder_checkpoint import display_name

    storage = cfg.output.storage or cfg.queries.storage
    staging = RerankStaging(staging_uri(cfg.output.uri, run_date.isoformat(), run_id), run_id, storage)
    return RerankRun(cfg=cfg, run_id=run_id, run_date=run_date, files=files, corpus_files=corpus_files,
                     staging=staging, redactor=redactor, fingerprint=run_fingerprint(cfg, redactor),
                     model_name=display_name(cfg.reranker.model), cpus=cpus, retrieval=retrieval)


def open_iceberg(cfg: RerankConfig):
    """The results and metrics tables of output.catalog (or the embedded catalog), checked before work."""
    from qbatch.connectors.iceberg_tables import IcebergResults

    try:
        return IcebergResults(cfg.output.catalog, cfg.output.uri, cfg.output.storage or cfg.queries.storage)
    except (ConfigError, SourceError):
        raise
    except ValueError as e:  # pyiceberg: a catalog it cannot build from these properties
        raise ConfigError(f"output.catalog: {e}") from None
    except Exception as e:  # noqa: BLE001 - any catalog or network failure: the sink is unreachable
        from qbatch.common.errors import SinkUnreachableError

        raise SinkUnreachableError(f"cannot open the Iceberg catalog of output.catalog: {type(e).__name__}: {e}") from None


def lock_name(cfg: RerankConfig, run_date) -> str:
    """One run per table and run date: Iceberg runs lock the catalog's table, Parquet runs the folder."""
    if cfg.output.format == "iceberg":
        from qbatch.connectors.iceberg_tables import catalog_key

        catalog = cfg.output.catalog
        table = f"{catalog.namespace}.{catalog.table}" if catalog else "qbatch.rerank_results"
        return f"_locks/iceberg/{catalog_key(catalog, cfg.output.uri)}/{table}/run_date={run_date.isoformat()}"
    return f"_locks/run_date={run_date.isoformat()}"


def _run_locked(run, args, secrets, started) -> dict:
    import ray

    from qbatch.connectors.lock_heartbeat import LockHeartbeat
    from qbatch.connectors.qdrant_candidates import QdrantCandidates, start_local_actor
    from qbatch.connectors.qdrant_lease import writer_config
    from qbatch.connectors.run_lock import RunLock
    from qbatch.jobs.rerank.run_phases import run_phases

    cfg = run.cfg
    local_actor = None
    # One run per run date at a time: two would publish over each other.
    with RunLock(cfg.output.uri, lock_name(cfg, run.run_date), run.run_id, run.storage) as lock, \
            LockHeartbeat(lock) as heartbeat:
        run.heartbeat = heartbeat
        from qbatch.connectors.rerank_staging import remove_abandoned

        abandoned = remove_abandoned(cfg.output.uri, run.run_date.isoformat(), run.run_id, run.storage)
        if abandoned:
            log.warning("removed the staging folders of runs %s of %s, killed and never resumed (they held raw "
                        "queries); rerun a day with its own run id to resume it instead", abandoned, run.run_date)
            run.abandoned_runs = abandoned
        try:
            if cfg.documents.source == "qdrant" or run.retrieval is not None:
                qdrant = writer_config(cfg.qdrant)  # local paths absolute, the API key resolved once
                if qdrant.is_local:
                    local_actor = start_local_actor(qdrant, cfg.qdrant.collection)
                run.qdrant = QdrantCandidates(qdrant, cfg.qdrant.collection, local_actor)
            return run_phases(run, args, secrets, started)
        finally:
            if local_actor is not None:
                ray.kill(local_actor, no_restart=True)
