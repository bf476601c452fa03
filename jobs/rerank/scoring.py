"""The working part of a `qbatch rerank` run: inputs -> Ray actor pool -> driver sink -> commit, with
dead letters, metrics and the run report. The partition is committed only when the reject ratio is
within `run.max_reject_ratio`; otherwise the staged parts stay uncommitted and the old partition (if
any) keeps serving, so readers never get a day that failed its policy."""

from __future__ import annotations

import logging
import sys
import time

from qbatch.connectors.object_store import join_uri
from qbatch.jobs.runtime.exit_codes import ExitCode

log = logging.getLogger("qbatch.rerank")


def _dead_letter(cfg, run_date, run_id):
    from qbatch.connectors.dead_letter_writer import DeadLetterWriter

    writer = DeadLetterWriter(cfg.output.uri, run_id, cfg.output.storage or cfg.queries.storage)
    # One dead-letter partition per run date, replaced by a rerun of that date like the results.
    writer.uri = join_uri(cfg.output.uri, "_dead_letter", f"run_date={run_date.isoformat()}")
    return writer


def score_and_write(cfg, args, files, client, retriever, redactor, run_date, run_id, secrets, started,
                    heartbeat=None) -> dict:
    import ray

    from qbatch.connectors.rerank_table import RerankTableWriter
    from qbatch.jobs.runtime.progress_line import ProgressLine
    from qbatch.jobs.runtime.actor_pool import plan_and_wait
    from qbatch.jobs.runtime.ray_start import init_ray
    from qbatch.jobs.rerank.inputs import RerankInputs
    from qbatch.jobs.rerank.report import write_metrics, write_report
    from qbatch.jobs.rerank.sink import ScoredSink
    from qbatch.pipeline.encoder_checkpoint import display_name
    from qbatch.pipeline.query_log import groups_to_table
    from qbatch.pipeline.rerank_stage import RerankStage, instruction_sha

    storage = cfg.output.storage or cfg.queries.storage
    stages: dict[str, float] = {}
    dead_letter = _dead_letter(cfg, run_date, run_id)
    inputs = RerankInputs(cfg, files, client, redactor)
    table = RerankTableWriter(cfg.output.uri, run_date, run_id, storage)
    model = display_name(cfg.reranker.model)
    sink = ScoredSink(table, dead_letter, redactor, model, instruction_sha(cfg.reranker.instruction), run_id)
    try:
        t = time.perf_counter()
        inputs.read_log(dead_letter)
        inputs.prepare(retriever, dead_letter)
        if retriever is not None:
            retriever.close()  # its actor's GPU goes to the reranker pool
        stages["read_and_group"] = time.perf_counter() - t
        init_ray(getattr(args, "ray_address", None))
        pool = plan_and_wait("reranker", cfg.reranker)
        log.info("pool: %s", pool.describe())
        t = time.perf_counter()
        refs = [ray.put(groups_to_table(groups)) for groups in inputs.iter_groups(dead_letter) if groups]
        stages["lookup_documents"] = time.perf_counter() - t
        t = time.perf_counter()
        if refs:
            kwargs = {"reranker_kwargs": {"name_or_path": cfg.reranker.model, "max_length": cfg.reranker.max_length,
                                          "device": cfg.reranker.device, "dtype": cfg.reranker.dtype,
                                          "max_batch_tokens": cfg.reranker.max_batch_tokens},
                      "instruction": cfg.reranker.instruction, "torch_threads": pool.torch_threads}
            ds = ray.data.from_arrow_refs(refs).map_batches(
                RerankStage, fn_constructor_kwargs=kwargs, batch_size=cfg.reranker.queries_per_batch,
                batch_format="pyarrow", num_cpus=pool.num_cpus, num_gpus=pool.num_gpus,
                compute=ray.data.ActorPoolStrategy(min_size=pool.concurrency[0], max_size=pool.concurrency[1]))
            progress = ProgressLine(cfg.run.progress and sys.stderr.isatty(), unit="pairs")
            for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                if heartbeat is not None:
                    heartbeat.check()
                sink.add(batch)
                progress.update(sink.scored_pairs)
            progress.close()
        sink.finish()
        stages["rerank"] = time.perf_counter() - t
    finally:
        inputs.close()
        dead_letter.close()
    read = inputs.counts["candidates_read"] + inputs.counts["candidates_retrieved"]
    ratio = dead_letter.count / read if read else 0.0
    over = ratio > cfg.run.max_reject_ratio
    exit_decision = {"code": int(ExitCode.REJECT_RATIO_EXCEEDED if over else ExitCode.OK),
                     "reason": (f"{dead_letter.count} of {read} candidates dead-lettered ({ratio:.2%}) > "
                                f"run.max_reject_ratio {cfg.run.max_reject_ratio:.2%}; partition not committed, "
                                f"see {dead_letter.uri}") if over else "ok",
                     "reject_ratio": ratio}
    partition = None if over else table.commit()
    metrics = sink.metrics.summary()
    metric_uris = write_metrics(cfg.output.uri, run_date, run_id, metrics, storage)
    wall = time.perf_counter() - started
    report = {
        "job": "rerank", "run_id": run_id, "run_date": run_date.isoformat(), "model": model,
        # For information: fp32 and bf16 scores differ by rounding only (README, "Precision").
        "precision": ", ".join(sorted(sink.precisions)) or None,
        "instruction_sha": instruction_sha(cfg.reranker.instruction), "exit": exit_decision,
        "counts": {**inputs.counts, "scored_pairs": sink.scored_pairs, "rows_written": table.rows,
                   "dead_lettered": dead_letter.count},
        "dead_letter_by_reason": dead_letter.counts_by_reason,
        "pairs_per_s": sink.scored_pairs / stages["rerank"] if stages.get("rerank") else 0.0,
        "stages": stages, "wall_s": wall, "partition": partition or "(not committed)",
        "metrics": metric_uris["json"],
    }
    uris = write_report(cfg.output.uri, run_date, run_id, report, storage, secrets)
    log.info("report written: %s", uris["json"])
    print(f"rerank {run_id} ({run_date.isoformat()}): {inputs.counts['queries']} queries, {sink.scored_pairs} pairs "
          f"scored, {dead_letter.count} dead-lettered, {report['pairs_per_s']:.1f} pairs/s, "
          f"wall {wall:.1f}s; exit: {exit_decision['reason'] if over else 'ok'}")
    return report
