"""The rerank job's prepare phase: one Ray Data plan from the query log to prepared parts, whose
workers send the driver acknowledgement rows only (jobs/rerank/ack_books.py):

    read log files (one task per file) -> parse and validate (tasks; bad rows become reject rows)
    [retrieval on: hash-partition by query_id -> rules, flag queries without candidates
                   -> those queries, ceil(Q / search_batch_size) blocks -> embed and search (actors)]
    texts: documents.source = corpus: left join with the validated corpus on doc_id (hash-partitioned)
           documents.source = qdrant: chunk-0 payload lookups (actors, one client each)
    -> hash-partition by query_id -> rules, missing texts, pack whole queries into parts of at most
       run.pairs_per_part pairs, write parts and dead letters (tasks, pipeline/prepare_finish.py)

A finished phase is recorded in `prepare/PREPARED.json` with its fingerprint and listings, so a
resumed attempt of the run skips it (jobs/rerank/run_fingerprint.py says when it must not)."""

from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

from qbatch.pipeline.query_log import LogColumns

log = logging.getLogger("qbatch.rerank")
PREPARED_MARKER = "prepare/PREPARED.json"
_LOG_BYTES_PER_PARTITION = 32 << 20
_BLOCK_BYTES = 64 << 20
_READ_ROWS = 4096


@dataclass
class RetrievalPlan:
    """What the retrieval actors load (from the collection's recorded spec) and how they are sized."""

    embedder_kwargs: dict
    instruction: str | None
    expected_revision: str | None
    k: int
    batch_size: int
    concurrency: tuple[int, int]
    num_gpus: float
    torch_threads: int | None


def prepare_partitions(cfg, files, cpus: float) -> int:
    """run.prepare_partitions, or one partition per 32 MiB of log files and at least one per CPU."""
    if cfg.run.prepare_partitions:
        return cfg.run.prepare_partitions
    return max(1, int(cpus), math.ceil(sum(f.size for f in files) / _LOG_BYTES_PER_PARTITION))


def _context(ds, cfg) -> Any:
    ctx = ds.context
    ctx.target_max_block_size = _BLOCK_BYTES
    ctx.execution_options.preserve_order = False  # every rule follows the order key, never arrival order
    ctx.use_disk_based_hash_shuffle = bool(cfg.run.disk_shuffle)
    return ds


def corpus_columns(docs) -> list[str]:
    from qbatch.common.row_validation import ColumnSpec

    spec = ColumnSpec(id=docs.id_column, text=docs.text_column, text_template=docs.text_template)
    return [docs.id_column, *(spec.template_fields if docs.text_template else [docs.text_column])]


def build_prepare_dataset(cfg, files, corpus_files, staging, redactor, partitions: int, qdrant=None,
                          retrieval: RetrievalPlan | None = None):
    """The lazy dataset of the prepare phase's acknowledgement rows (retrieval, when on, runs while
    this is built: its flagged queries are counted to cut them into search batches)."""
    import ray

    from qbatch.connectors.corpus_datasource import CorpusDatasource
    from qbatch.pipeline.prepare_finish import finish_partition
    from qbatch.pipeline.query_log import parse_stage

    file_index = {f.uri: i for i, f in enumerate(files)}
    cols = LogColumns(**{k: v for k, v in cfg.queries.columns.model_dump().items() if k != "ts"})
    rows = _context(ray.data.read_datasource(CorpusDatasource(files, cfg.queries.storage, batch_rows=_READ_ROWS),
                                             num_cpus=0.5), cfg)
    rows = rows.map_batches(parse_stage, fn_args=(cols, cfg.queries.shape, file_index, redactor),
                            batch_format="pyarrow", batch_size=None, num_cpus=0.5)
    if retrieval is not None:
        rows = _with_retrieval(rows, cfg, partitions, redactor, qdrant, retrieval)
    if cfg.documents.source == "corpus":
        from qbatch.pipeline.corpus_texts import corpus_text_rows

        docs = cfg.documents
        corpus_index = {f.uri: i for i, f in enumerate(corpus_files)}
        corpus = _context(ray.data.read_datasource(
            CorpusDatasource(corpus_files, docs.corpus.storage, batch_rows=_READ_ROWS, columns=corpus_columns(docs)),
            num_cpus=0.5), cfg)
        corpus = corpus.map_batches(corpus_text_rows, fn_args=({"id_column": docs.id_column,
                                                                "text_column": docs.text_column,
                                                                "text_template": docs.text_template}, corpus_index),
                                    batch_format="pyarrow", batch_size=None, num_cpus=0.5)
        # Hash-partitioned on doc_id; it keeps every corpus record of an id: the finish step takes the first.
        rows = rows.drop_columns(["text", "text_rank"]).join(corpus, join_type="left_outer", num_partitions=partitions,
                                                             on=("doc_id",))
        where = "documents.corpus"
    else:
        from qbatch.pipeline.candidate_lookup import PayloadLookupStage

        actors = 1 if cfg.qdrant.is_local else cfg.documents.lookup_actors
        rows = rows.map_batches(PayloadLookupStage, fn_constructor_args=(qdrant,), batch_format="pyarrow",
                                batch_size=None, num_cpus=0.25, compute=ray.data.ActorPoolStrategy(size=actors))
        where = f"the payload of {cfg.qdrant.collection!r} (chunk 0)"
    return rows.repartition(partitions, keys=["query_id"]).map_batches(
        finish_partition, batch_format="pyarrow", batch_size=None,
        fn_kwargs={"staging": staging, "max_per_query": cfg.candidates.max_per_query,
                   "pairs_per_part": cfg.run.pairs_per_part, "redactor": redactor,
                   "file_uris": [f.uri for f in files], "retrieval": retrieval is not None, "missing_where": where})


def _with_retrieval(rows, cfg, partitions, redactor, qdrant, retrieval: RetrievalPlan):
    import ray

    from qbatch.pipeline.candidate_lookup import RetrievalStage
    from qbatch.pipeline.candidate_rules import rules_before_retrieval, select_retrieval

    grouped = rows.repartition(partitions, keys=["query_id"]).map_batches(
        rules_before_retrieval, fn_args=(cfg.candidates.max_per_query, redactor), batch_format="pyarrow",
        batch_size=None).materialize()
    flagged = grouped.map_batches(select_retrieval, fn_args=(True,), batch_format="pyarrow",
                                  batch_size=None).materialize()
    rest = grouped.map_batches(select_retrieval, fn_args=(False,), batch_format="pyarrow", batch_size=None)
    queries = flagged.count()
    if not queries:
        return rest
    # Exactly ceil(Q / batch) blocks of at most `batch` queries: one search request each.
    found = flagged.repartition(math.ceil(queries / retrieval.batch_size)).map_batches(
        RetrievalStage, fn_constructor_args=(retrieval.embedder_kwargs, retrieval.instruction, retrieval.k, qdrant,
                                             retrieval.expected_revision, retrieval.torch_threads),
        batch_format="pyarrow", batch_size=None, num_cpus=1, num_gpus=retrieval.num_gpus or None,
        compute=ray.data.ActorPoolStrategy(min_size=retrieval.concurrency[0], max_size=retrieval.concurrency[1]))
    # Run the retrieval to its end here, so its actors (and their GPUs) are released before the shuffles.
    return rest.union(found.materialize())


def run_prepare(run, books) -> dict[str, Any]:
    """The prepare phase of `run` (jobs/rerank/run_phases.RerankRun), or the record of the one an earlier
    attempt finished; fills `books` either way. Returns its figures for the report."""
    from qbatch.jobs.rerank.run_fingerprint import check_unchanged
    from qbatch.connectors.run_plan_store import listing_record

    staging = run.staging
    saved = staging.read_json(PREPARED_MARKER)
    if saved is not None:
        check_unchanged(saved, run.fingerprint, run.files, run.corpus_files, run.run_id, staging.root)
        books.units = {u: (int(p), int(q)) for u, p, q in saved["units"]}
        books.prepare.counts.update(saved["counts"])
        books.prepare.reasons.update(saved["reasons"])
        books.prepare.dead_letter_parts.update(saved["dead_letters"])
        books.prepare.nodes.update(saved.get("nodes", []))
        run.prepared_token = saved["token"]
        log.info("run %s: prepare phase finished by an earlier attempt (%d units); not redone", run.run_id,
                 len(books.units))
        return {"skipped": True, "seconds": 0.0, "partitions": saved.get("partitions")}
    started = time.perf_counter()
    partitions = prepare_partitions(run.cfg, run.files, run.cpus)
    ds = build_prepare_dataset(run.cfg, run.files, run.corpus_files, staging, run.redactor, partitions,
                               run.qdrant, run.retrieval)
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=0):
        books.consume_prepare(batch)
        run.check_lock()
    seconds = time.perf_counter() - started
    run.prepared_token = uuid.uuid4().hex
    staging.write_json(PREPARED_MARKER, {
        "token": run.prepared_token, "fingerprint": run.fingerprint, "files": listing_record(run.files),
        "corpus_files": listing_record(run.corpus_files), "partitions": partitions,
        "units": sorted([u, p, q] for u, (p, q) in books.units.items()),
        "counts": dict(books.prepare.counts), "reasons": dict(books.prepare.reasons),
        "dead_letters": dict(books.prepare.dead_letter_parts), "nodes": sorted(books.prepare.nodes),
        "seconds": seconds})
    return {"skipped": False, "seconds": seconds, "partitions": partitions}
