"""Retrieval mode and Qdrant payload texts, end to end: `qbatch index` builds a local-mode Qdrant alias
with the tiny embedding checkpoint; `qbatch rerank` reads a nested Parquet log whose queries partly
have no candidates, retrieves the alias's top k for those, and writes redacted results."""

from __future__ import annotations

import contextlib
import io
import json
import math
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qbatch.connectors.rerank_table import read_rerank_partition
from qbatch.jobs import cli
from qbatch.jobs.runtime.exit_codes import ExitCode
from qbatch.pipeline.query_redaction import QueryRedactor
from tests.jobs.rerank.test_job import DAY, jsonl, make_corpus, read_dead_letters, write_config

K = 3
HMAC_KEY = "test-hmac-key-0123456789"


@pytest.fixture(scope="module")
def retrieval_run(tmp_path_factory, stdlib_pairs, tiny_embedding_checkpoint, tiny_reranker_checkpoint, ray_session):
    tmp = tmp_path_factory.mktemp("rerank-retrieval")
    corpus = jsonl(tmp / "corpus.jsonl", make_corpus(stdlib_pairs, 40))
    qdrant = tmp / "qdrant"
    index_code = cli.main(["index", "--log-level", "WARNING", "--set", f"source.uri={corpus}",
                           "--set", f"embed.model={tiny_embedding_checkpoint}", "--set", "embed.max_length=128",
                           "--set", f"qdrant.path={qdrant}", "--set", "qdrant.collection=docs",
                           "--set", f"run.output_uri={tmp / 'index-out'}", "--set", "gates.min_ratio=0"])
    assert index_code == ExitCode.OK
    rng = random.Random(5)
    rows = []
    for i in range(24):
        n = 0 if i % 4 == 0 else rng.randint(1, 4)  # every 4th query is logged without candidates
        picks = rng.sample(range(40), n)
        rows.append({"qid": f"q{i:03d}", "text": stdlib_pairs[i]["query"],
                     "cands": [{"doc_id": stdlib_pairs[j]["id"], "rank": r + 1} for r, j in enumerate(picks)]})
    rows[1]["cands"].append({"doc_id": "not-indexed", "rank": 9})
    (tmp / "log").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp / "log" / "part-0.parquet")
    config = write_config(tmp / "rerank.toml", {
        "queries": {"uri": str(tmp / "log"), "shape": "nested"},
        "queries.columns": {"query_id": "qid", "query": "text", "candidates": "cands"},
        "documents": {"source": "qdrant"},
        "candidates": {"retrieve_top_k": K, "embed_model": str(tiny_embedding_checkpoint), "search_batch_size": 4},
        "reranker": {"model": str(tiny_reranker_checkpoint), "max_length": 160},
        "qdrant": {"path": str(qdrant), "collection": "docs"},
        "output": {"uri": str(tmp / "out"), "run_date": DAY.isoformat(), "redact_queries": True,
                   "hmac_key_env": "QBATCH_TEST_HMAC_KEY"},
        "run": {"max_reject_ratio": 0.2, "progress": False}})
    mp = pytest.MonkeyPatch()
    mp.setenv("QBATCH_TEST_HMAC_KEY", HMAC_KEY)
    driver_calls: list[str] = []  # Qdrant calls made by this process, the driver (the plan's actors are others)
    from qdrant_client import QdrantClient

    for name in ("query_points", "query_batch_points", "retrieve"):
        original = getattr(QdrantClient, name)
        mp.setattr(QdrantClient, name, lambda self, *a, _n=name, _o=original, **k: (driver_calls.append(_n), _o(
            self, *a, **k))[1])
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):  # the job's log handler writes to sys.stderr
            code = cli.main(["rerank", "--config", str(config), "--log-level", "DEBUG"])
    finally:
        mp.undo()
    return {"code": code, "log": stderr.getvalue(), "rows": rows, "out": str(tmp / "out"), "driver_calls": driver_calls,
            "report": json.loads(next(Path(tmp / "out", "_reports").rglob("report.json")).read_text()),
            "table": read_rerank_partition(str(tmp / "out"), DAY).to_pandas()}


def test_queries_without_candidates_get_the_top_k(retrieval_run):
    assert retrieval_run["code"] == ExitCode.OK
    table = retrieval_run["table"]
    empty = {r["qid"] for r in retrieval_run["rows"] if not r["cands"]}
    retrieved = table[table["source"] == "retrieved"]
    assert set(retrieved["query_id"]) == empty
    assert (retrieved.groupby("query_id").size() == K).all()
    assert set(table[table["query_id"].isin(empty)]["source"]) == {"retrieved"}
    logged = table[table["source"] == "log"]
    assert len(logged) == sum(len(r["cands"]) for r in retrieval_run["rows"]) - 1  # minus the unindexed doc
    for _, group in table.groupby("query_id"):
        assert sorted(group["new_rank"]) == list(range(1, len(group) + 1))


def test_queries_are_redacted_everywhere_and_the_key_never_logged(retrieval_run):
    table = retrieval_run["table"]
    redactor = QueryRedactor(HMAC_KEY.encode())
    by_id = {r["qid"]: r["text"] for r in retrieval_run["rows"]}
    assert all(q == redactor.redact(by_id[qid]) for qid, q in zip(table["query_id"], table["query"]))
    texts = set(by_id.values())
    assert not texts & set(table["query"])
    dead = read_dead_letters(retrieval_run["out"])
    assert [d["reason"] for d in dead] == ["missing_document"]
    assert not any(t in d["original_row"] for d in dead for t in texts)
    reports = "".join(p.read_text() for p in Path(retrieval_run["out"], "_reports").rglob("*.json"))
    assert HMAC_KEY not in reports and not any(t in reports for t in texts)
    assert "qbatch.rerank" in retrieval_run["log"]  # the job did log, at DEBUG
    assert HMAC_KEY not in retrieval_run["log"] and not any(t in retrieval_run["log"] for t in texts)


def test_retrieval_runs_in_the_plan_in_batched_requests(retrieval_run):
    empty = sum(1 for r in retrieval_run["rows"] if not r["cands"])
    assert retrieval_run["driver_calls"] == []  # no search and no payload lookup from the driver
    requests = retrieval_run["report"]["plan"]["qdrant_requests"]
    assert 1 <= requests["search"] <= math.ceil(empty / 4) and requests["lookup"] >= 1
    assert retrieval_run["report"]["counts"]["queries_retrieved"] == empty


def test_no_query_text_reaches_the_worker_logs_or_outlives_the_run(retrieval_run):
    import ray

    logs = Path(ray._private.worker.global_worker.node.get_logs_dir_path())
    texts = {r["text"] for r in retrieval_run["rows"]}
    worker_logs = [p for p in logs.glob("worker-*") if p.is_file()]
    assert worker_logs and not any(t in p.read_text(errors="replace") for p in worker_logs for t in texts)
    assert not any(Path(retrieval_run["out"]).rglob("prepared"))  # prepared parts (raw queries) deleted
