"""The rerank job's score phase: a Ray Data plan over the units (prepared parts) not yet scored. Each
unit goes to the reranker actor pool whole (pipeline/rerank_stage.py), which reads it, scores it query
by query, writes its result part and dead letters into staging, and sends back one acknowledgement.
The driver checkpoints each unit as soon as its acknowledgement arrives (jobs/rerank/ack_books.py), so
a killed run redoes at most the units that were in flight.

Test-only fault injection, never set in production (labelled FAULT INJECTION):
QBATCH_TEST_RERANK_KILL_AFTER_UNITS="N:FLAG" SIGKILLs the driver once N units of this attempt are
checkpointed, if FLAG exists (it deletes FLAG first), to exercise resume."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from typing import Any

log = logging.getLogger("qbatch.rerank")
_KILL_AFTER_UNITS_ENV = "QBATCH_TEST_RERANK_KILL_AFTER_UNITS"


def resume_state(staging, books) -> dict[str, Any]:
    """Restore the units an earlier attempt checkpointed; what was skipped and what will be redone."""
    done = {name[:-len(".json")] for name in staging.names_in("units") if name.endswith(".json")}
    started = staging.names_in("started")
    for unit in sorted(done & set(books.units)):
        books.restore_done(staging.read_json(f"units/{unit}.json"))
    in_flight = sorted((started - done) & set(books.units))
    return {"units_total": len(books.units), "units_skipped_done": len(books.done),
            "units_in_flight_at_crash": len(in_flight), "units_redone": len(in_flight)}


def build_score_dataset(cfg, units: list[str], staging, redactor, pool, model_name: str, run_id: str,
                        results=None, constant_columns: dict | None = None):
    import ray

    from qbatch.pipeline.rerank_stage import RerankStage

    kwargs = {"reranker_kwargs": {"name_or_path": cfg.reranker.model, "max_length": cfg.reranker.max_length,
                                  "device": cfg.reranker.device, "dtype": cfg.reranker.dtype,
                                  "max_batch_tokens": cfg.reranker.max_batch_tokens},
              "instruction": cfg.reranker.instruction, "torch_threads": pool.torch_threads, "staging": staging,
              "redactor": redactor, "model_name": model_name, "run_id": run_id,
              "candidates_per_chunk": cfg.reranker.candidates_per_chunk, "results": results,
              "constant_columns": constant_columns}
    ds = ray.data.from_items([{"unit": u} for u in units], override_num_blocks=max(1, min(len(units), 1000)))
    ds.context.execution_options.preserve_order = False
    return ds.map_batches(RerankStage, fn_constructor_kwargs=kwargs, batch_size=1, batch_format="pyarrow",
                          num_cpus=pool.num_cpus, num_gpus=pool.num_gpus or None,
                          # One unit at a time per actor: a unit is a long call, and queueing more on the
                          # first actor that is ready would starve the others of the skewed big units.
                          compute=ray.data.ActorPoolStrategy(min_size=pool.concurrency[0],
                                                             max_size=pool.concurrency[1],
                                                             max_tasks_in_flight_per_actor=1))


def run_score(run, books, pool, results=None, constant_columns: dict | None = None) -> dict[str, Any]:
    """Score every unit not yet checkpointed; returns the phase's figures and its resume section."""
    from qbatch.jobs.runtime.progress_line import ProgressLine

    resume = resume_state(run.staging, books)
    todo = sorted(u for u in books.units if u not in books.done)
    started = time.perf_counter()
    if resume["units_skipped_done"] or resume["units_in_flight_at_crash"]:
        log.info("resuming run %s: %d units already scored, %d were in flight", run.run_id,
                 resume["units_skipped_done"], resume["units_in_flight_at_crash"])
    kill = _kill_switch()
    if todo:
        ds = build_score_dataset(run.cfg, todo, run.staging, run.redactor, pool, run.model_name, run.run_id,
                                 results, constant_columns)
        bar = ProgressLine(run.cfg.run.progress and sys.stderr.isatty(), unit="pairs")
        scored = 0
        try:
            for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=0):
                books.consume_score(batch)
                run.check_lock()
                scored = len(books.done) - resume["units_skipped_done"]
                bar.update(sum(books.done.values()))
                if kill is not None and scored >= kill[0] and os.path.exists(kill[1]):
                    os.remove(kill[1])
                    log.warning("FAULT INJECTION: killing the driver after %d scored units", scored)
                    os.kill(os.getpid(), signal.SIGKILL)
        finally:
            bar.close()
    missing = sorted(set(books.units) - set(books.done))
    if missing:
        raise RuntimeError(f"{len(missing)} units were never acknowledged by the reranker pool, e.g. {missing[:3]}")
    return {"seconds": time.perf_counter() - started, "resume": resume, "units_this_attempt": len(todo)}


def _kill_switch() -> tuple[int, str] | None:
    value = os.environ.get(_KILL_AFTER_UNITS_ENV)
    if not value:
        return None
    n, flag = value.split(":", 1)
    return int(n), flag
