"""The rerank job as one Ray Data plan, with real parts: local Ray, the tiny Qwen3 reranker (real
vocabulary), a corpus joined on doc id. Logs are skewed (Zipf candidate counts plus one query with
10,000 candidates) and split over two files; the output must not depend on how work was spread (actors,
partitions), and the driver must only ever see acknowledgement rows."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from qbatch.connectors.rerank_table import read_rerank_partition, read_success
from qbatch.jobs.rerank.ack_books import RerankBooks
from qbatch.jobs.runtime.exit_codes import ExitCode
from qbatch.pipeline.rerank_acks import ACK_SCHEMA
from tests.jobs.rerank.test_job import DAY, MAX_LENGTH, jsonl, read_dead_letters, rerank, write_config

BIG = 10_000


def report_of(out: Path) -> dict:
    return json.loads(next(Path(out, "_reports").rglob("report.json")).read_text())


@pytest.fixture(scope="module")
def skewed(tmp_path_factory, stdlib_pairs, tiny_reranker_checkpoint, ray_session):
    tmp = tmp_path_factory.mktemp("rerank-skew")
    texts = [p["document"][:120] for p in stdlib_pairs]
    corpus = [{"id": f"doc-{i:05d}", "text": f"{texts[i % len(texts)]} (variant {i // len(texts)})"}
              for i in range(BIG + 200)]
    corpus.insert(5, {"id": "doc-00003", "text": "a later record of doc-00003: never used"})  # first record wins
    corpus.append({"id": "doc-invalid", "text": "   "})  # fails the index job's validation: missing
    jsonl(tmp / "corpus.jsonl", corpus)
    rng = np.random.default_rng(11)
    rows = []
    for q in range(120):
        n = int(min(rng.zipf(1.6), 60))
        docs = rng.choice(300, size=n, replace=False)
        for rank, d in enumerate(docs, 1):
            rows.append({"query_id": f"q{q:03d}", "query": stdlib_pairs[q]["query"], "doc_id": f"doc-{d:05d}",
                         "rank": int(rank), "label": int(rank == 1)})
    rows.append({"query_id": "q000", "query": stdlib_pairs[0]["query"], "doc_id": "doc-invalid", "rank": 99})
    rows.append({"query_id": "q-dup", "query": "which record of a duplicated id", "doc_id": "doc-00003", "rank": 1})
    big = [{"query_id": "q-big", "query": "read and write files in a compressed archive", "doc_id": f"doc-{d:05d}",
            "rank": i + 1} for i, d in enumerate(random.Random(3).sample(range(BIG + 200), BIG))]
    (tmp / "log").mkdir()
    jsonl(tmp / "log" / "part-0.jsonl", rows[: len(rows) // 2] + big[:4000])
    jsonl(tmp / "log" / "part-1.jsonl", rows[len(rows) // 2:] + big[4000:])
    config = write_config(tmp / "rerank.toml", {
        "queries": {"uri": str(tmp / "log"), "format": "jsonl"},
        "documents": {"source": "corpus", "id_column": "id", "text_column": "text"},
        "documents.corpus": {"uri": str(tmp / "corpus.jsonl")},
        "candidates": {"max_per_query": BIG},
        "reranker": {"model": str(tiny_reranker_checkpoint), "max_length": MAX_LENGTH, "dtype": "float32",
                     "torch_threads": 1, "candidates_per_chunk": 512},
        "output": {"run_date": DAY.isoformat()},
        "run": {"max_reject_ratio": 0.1, "progress": False, "pairs_per_part": 100}})
    return {"tmp": tmp, "config": config, "rows": rows, "big": big, "corpus": {d["id"]: d["text"] for d in reversed(corpus)},
            "checkpoint": tiny_reranker_checkpoint}


@pytest.fixture(scope="module")
def two_runs(skewed):
    """The same log scored with 1 actor and 2 partitions, and with 3 actors, 5 partitions and the shuffles on
    local disk (run.disk_shuffle)."""
    seen: list = []
    originals = RerankBooks.consume_prepare, RerankBooks.consume_score
    mp = pytest.MonkeyPatch()
    mp.setattr(RerankBooks, "consume_prepare", lambda self, b: (seen.append(b.schema), originals[0](self, b))[1])
    mp.setattr(RerankBooks, "consume_score", lambda self, b: (seen.append(b.schema), originals[1](self, b))[1])
    try:
        runs = {}
        for name, extra in (("one", ["--set", "reranker.concurrency=1", "--set", "run.prepare_partitions=2"]),
                            ("three", ["--set", "reranker.concurrency=[3, 3]", "--set", "reranker.num_cpus=0.25",
                                       "--set", "run.prepare_partitions=5", "--set", "run.disk_shuffle=true"])):
            out = skewed["tmp"] / f"out-{name}"
            code = rerank(skewed["config"], "--set", f"output.uri={out}", *extra)
            runs[name] = {"code": code, "out": out, "report": report_of(out),
                          "table": read_rerank_partition(str(out), DAY).to_pandas()}
    finally:
        mp.undo()
    return {**runs, "schemas": seen}


def test_the_driver_only_ever_sees_acknowledgement_rows(two_runs):
    assert len(two_runs["schemas"]) > 10 and all(s.equals(ACK_SCHEMA) for s in two_runs["schemas"])
    assert not {"query", "text", "rerank_score", "doc_id"} & set(ACK_SCHEMA.names)


def test_the_output_does_not_depend_on_actors_or_partitions(two_runs, skewed):
    one, three = two_runs["one"], two_runs["three"]
    assert one["code"] == three["code"] == ExitCode.OK
    assert len(set(three["report"]["workers"]["score_pids"])) >= 3
    assert (one["report"]["plan"]["prepare_partitions"], three["report"]["plan"]["prepare_partitions"]) == (2, 5)
    a = one["table"].sort_values(["query_id", "new_rank"]).reset_index(drop=True)
    b = three["table"].sort_values(["query_id", "new_rank"]).reset_index(drop=True)
    assert a.equals(b)
    expected = {(r["query_id"], r["doc_id"]) for r in skewed["rows"] + skewed["big"] if r["doc_id"] != "doc-invalid"}
    assert len(a) == len(expected) and set(zip(a["query_id"], a["doc_id"])) == expected  # exact rows
    for _, group in a.groupby("query_id"):
        assert list(group["new_rank"]) == list(range(1, len(group) + 1))
        assert list(group["rerank_score"]) == sorted(group["rerank_score"], reverse=True)


def test_the_big_query_scores_as_it_would_alone(two_runs, skewed):
    from qbatch.pipeline.reranker import Reranker

    table = two_runs["three"]["table"]
    big = table[table["query_id"] == "q-big"].sort_values("doc_id")
    assert len(big) == BIG and two_runs["three"]["report"]["plan"]["units"] > 2
    reranker = Reranker.from_pretrained(skewed["checkpoint"], max_length=MAX_LENGTH, dtype="float32")
    alone, valid = reranker.score_candidates(skewed["big"][0]["query"], [skewed["corpus"][d] for d in big["doc_id"]])
    assert valid.all() and np.abs(big["rerank_score"].to_numpy() - alone).max() <= 1e-5
    dup = table[table["query_id"] == "q-dup"]
    first, later = reranker.score([("which record of a duplicated id", skewed["corpus"]["doc-00003"]),
                                   ("which record of a duplicated id", "a later record of doc-00003: never used")])
    assert abs(float(dup["rerank_score"].iloc[0]) - first) <= 1e-5 and abs(first - later) > 1e-4


def test_corpus_records_that_are_missing_duplicated_or_invalid_give_todays_dead_letters(two_runs):
    rows = read_dead_letters(str(two_runs["one"]["out"]))
    assert [(r["reason"], r["doc_id"]) for r in rows] == [("missing_document", "doc-invalid")]
    assert rows[0]["file"].endswith("part-0.jsonl") or rows[0]["file"].endswith("part-1.jsonl")
    assert rows[0]["detail"] == "no text for doc_id 'doc-invalid' in documents.corpus"
    assert two_runs["one"]["report"]["dead_letter_by_reason"] == {"missing_document": 1}


def test_acknowledgement_bytes_per_unit_stay_flat_from_n_to_4n(skewed, stdlib_pairs, tmp_path):
    per_unit = {}
    for scale in (1, 4):
        rows = [{"query_id": f"q{q:04d}", "query": stdlib_pairs[q % 300]["query"], "doc_id": f"doc-{(q * 7 + c) % 300:05d}",
                 "rank": c + 1} for q in range(40 * scale) for c in range(5)]
        log = jsonl(tmp_path / f"log-{scale}.jsonl", rows)
        out = tmp_path / f"out-{scale}"
        assert rerank(skewed["config"], "--set", f"queries.uri={log}", "--set", f"output.uri={out}",
                      "--set", "run.pairs_per_part=20", "--set", "run.prepare_partitions=2") == ExitCode.OK
        report = report_of(out)
        assert report["plan"]["units"] >= 10 * scale and report["counts"]["scored_pairs"] == 200 * scale
        total = report["driver"]["ack_bytes"]["prepare"] + report["driver"]["ack_bytes"]["score"]
        per_unit[scale] = (report["driver"]["ack_bytes_per_unit"]["score"], total / report["plan"]["units"])
    (score_1, total_1), (score_4, total_4) = per_unit[1], per_unit[4]
    assert abs(score_4 - score_1) <= 0.1 * score_1 and total_4 <= 1.1 * total_1


def test_an_empty_log_commits_an_empty_day_and_a_missing_corpus_is_a_source_error(skewed, tmp_path, capsys):
    blank = tmp_path / "blank"
    blank.mkdir()
    (blank / "part-0.jsonl").write_text("\n\n")
    out = tmp_path / "empty-out"
    assert rerank(skewed["config"], "--set", f"queries.uri={blank}", "--set", f"output.uri={out}") == ExitCode.OK
    assert read_success(str(out), DAY)["rows"] == 0 and read_rerank_partition(str(out), DAY).num_rows == 0
    out2 = tmp_path / "no-corpus-out"
    code = rerank(skewed["config"], "--set", f"output.uri={out2}",
                  "--set", f"documents.corpus.uri={tmp_path / 'no-such-corpus'}")
    assert code == ExitCode.SOURCE_ERROR and "no-such-corpus" in capsys.readouterr().err and not out2.exists()
