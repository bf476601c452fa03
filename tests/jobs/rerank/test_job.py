"""`qbatch rerank` end to end with real parts: local Ray, the tiny Qwen3 reranker (real vocabulary),
local-mode Qdrant built by `qbatch index`, moto S3. Logs are generated deterministically from
standard-library docstrings: each query's own docstring is its relevant candidate (label 1)."""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from qbatch.connectors.object_store import filesystem_for
from qbatch.connectors.rerank_table import read_rerank_partition
from qbatch.jobs import cli
from qbatch.jobs.runtime.exit_codes import ExitCode
from tests.fixtures.moto_s3 import FAKE_ACCESS_KEY, FAKE_SECRET_KEY

DAY = dt.date(2026, 11, 27)
MAX_LENGTH = 160


def toml_value(v) -> str:
    return json.dumps(v) if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)


def write_config(path: Path, sections: dict[str, dict]) -> Path:
    lines = []
    for name, fields in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{json.dumps(k) if '.' in k else k} = {toml_value(v)}" for k, v in fields.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def make_corpus(pairs: list[dict], n_docs: int) -> list[dict]:
    return [{"id": p["id"], "text": p["document"][:240]} for p in pairs[:n_docs]]


def make_log(pairs: list[dict], n_queries: int, n_docs: int, seed: int, max_candidates: int) -> list[dict]:
    """Long-shape rows; candidate 0 of query i is doc i (label 1), the rest are random others."""
    rng = random.Random(seed)
    rows = []
    for i in range(n_queries):
        k = rng.randint(1, max_candidates)
        others = rng.sample([j for j in range(n_docs) if j != i], k - 1)
        docs = [i, *others]
        rng.shuffle(docs)
        for rank, j in enumerate(docs, 1):
            rows.append({"query_id": f"q{i:04d}", "query": pairs[i]["query"], "doc_id": pairs[j]["id"],
                         "rank": rank, "score": round(1.0 - rank / 100, 4), "label": int(j == i)})
    return rows


def jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def read_dead_letters(uri: str, storage=None) -> list[dict]:
    fs, base = filesystem_for(f"{uri}/_dead_letter/run_date={DAY.isoformat()}", storage)
    infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    out = []
    for info in sorted((i for i in infos if i.path.endswith(".parquet")), key=lambda i: i.path):
        with fs.open_input_file(info.path) as f:
            out += pq.ParquetFile(f).read().to_pylist()
    return out


def rerank(config: Path, *extra: str) -> int:
    return cli.main(["rerank", "--config", str(config), "--log-level", "WARNING", *extra])


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory, stdlib_pairs, tiny_reranker_checkpoint, ray_session):
    """A long-shape JSONL log with every kind of bad input, documents from a corpus; run twice."""
    tmp = tmp_path_factory.mktemp("rerank-corpus")
    corpus = jsonl(tmp / "corpus.jsonl", make_corpus(stdlib_pairs, 120))
    good = make_log(stdlib_pairs, 60, 120, seed=7, max_candidates=7)
    bad = ['{"query_id": "broken", "query": "tru',
           {"query_id": "empty", "query": "   ", "doc_id": stdlib_pairs[0]["id"]},
           {"query_id": "q0000", "query": stdlib_pairs[0]["query"], "doc_id": good[0]["doc_id"], "rank": 99},
           {"query_id": "q0001", "query": stdlib_pairs[1]["query"], "doc_id": "no-such-doc", "rank": 50},
           {"query_id": "lonely", "query": "a query logged without candidates"}]
    (tmp / "log").mkdir()
    log = jsonl(tmp / "log" / "part-0.jsonl", good + bad)
    config = write_config(tmp / "rerank.toml", {
        "queries": {"uri": str(log.parent), "format": "jsonl"},
        "documents": {"source": "corpus", "id_column": "id", "text_column": "text"},
        "documents.corpus": {"uri": str(corpus)},
        "reranker": {"model": str(tiny_reranker_checkpoint), "max_length": MAX_LENGTH, "queries_per_batch": 8,
                     "dtype": "float32"},  # the parity test below compares shared and unshared scores at 1e-4
        "output": {"uri": str(tmp / "out"), "run_date": DAY.isoformat()},
        "run": {"max_reject_ratio": 0.1, "progress": False}})
    first = rerank(config)
    table_first = read_rerank_partition(str(tmp / "out"), DAY)
    second = rerank(config)
    return {"codes": (first, second), "first": table_first, "second": read_rerank_partition(str(tmp / "out"), DAY),
            "good": good, "corpus": {d["id"]: d["text"] for d in make_corpus(stdlib_pairs, 120)},
            "out": str(tmp / "out"), "checkpoint": tiny_reranker_checkpoint, "config": config}


def test_corpus_run_scores_every_good_candidate_once(corpus_run):
    assert corpus_run["codes"] == (ExitCode.OK, ExitCode.OK)
    table = corpus_run["first"].to_pandas()
    assert len(table) == len(corpus_run["good"])
    assert not table.duplicated(["query_id", "doc_id"]).any()
    assert set(table["source"]) == {"log"} and set(table["query_id"]) == {r["query_id"] for r in corpus_run["good"]}
    for _, group in table.groupby("query_id"):
        assert sorted(group["new_rank"]) == list(range(1, len(group) + 1))
        by_rank = group.sort_values("new_rank")
        assert list(by_rank["rerank_score"]) == sorted(by_rank["rerank_score"], reverse=True)
    assert table["rerank_score"].between(0, 1).all() and str(table["rerank_score"].dtype) == "float32"


def test_scores_equal_unshared_reranker_scores(corpus_run):
    from qbatch.pipeline.reranker import Reranker

    table = corpus_run["first"].to_pandas()
    sample = table[table["query_id"].isin(sorted(set(table["query_id"]))[:12])]
    reranker = Reranker.from_pretrained(corpus_run["checkpoint"], max_length=MAX_LENGTH, dtype="float32")
    expected = reranker.score(list(zip(sample["query"], (corpus_run["corpus"][d] for d in sample["doc_id"]))))
    assert len(sample) >= 12
    assert abs(sample["rerank_score"].to_numpy() - expected).max() <= 1e-4


def test_rerun_replaces_the_partition(corpus_run):
    first, second = corpus_run["first"], corpus_run["second"]
    assert second.num_rows == first.num_rows
    assert not second.to_pandas().duplicated(["query_id", "doc_id"]).any()
    folder = Path(corpus_run["out"], f"run_date={DAY.isoformat()}")
    names = {p.name for p in folder.iterdir()}
    marker = json.loads((folder / "_SUCCESS").read_text())
    assert names == {"_SUCCESS", *marker["parts"]} and marker["rows"] == second.num_rows
    assert all(n.startswith("part-prep-") and n.endswith(".parquet") for n in marker["parts"])
    assert not Path(corpus_run["out"], "_staging").exists() or not any(Path(corpus_run["out"], "_staging").rglob("*.parquet"))


def test_bad_input_is_dead_lettered_with_reasons(corpus_run):
    rows = read_dead_letters(corpus_run["out"])
    reasons = sorted(r["reason"] for r in rows)
    assert reasons == ["broken_json", "duplicate_candidate", "empty_query", "missing_document", "no_candidates"]
    missing = next(r for r in rows if r["reason"] == "missing_document")
    assert missing["doc_id"] == "no-such-doc" and json.loads(missing["original_row"])["query_id"] == "q0001"


def test_metrics_report_compares_before_and_after(corpus_run):
    metrics = json.loads(Path(corpus_run["out"], "_reports", f"run_date={DAY.isoformat()}", "metrics.json").read_text())
    overall = metrics["labelled"]["overall"]
    assert overall["queries"] == 60
    assert 0 < overall["before"]["ndcg@10"] <= 1 and 0 < overall["after"]["mrr@10"] <= 1
    change = metrics["labelled"]["ndcg@10_change"]
    assert change["better"] + change["worse"] + change["same"] == 60
    report = json.loads(Path(corpus_run["out"], "_reports", f"run_date={DAY.isoformat()}", "runs", "20261127",
                             "report.json").read_text())
    assert report["counts"]["scored_pairs"] == len(corpus_run["good"]) and report["pairs_per_s"] > 0
    assert report["precision"] == "float32"  # what the actors ran in: the config pins it
    assert report["exit"]["code"] == 0


def test_reject_ratio_above_the_limit_exits_non_zero_and_does_not_commit(corpus_run, tmp_path):
    log = jsonl(tmp_path / "bad.jsonl", ['{"query_id": "x", "query": "cut', {"query_id": "y", "query": "no candidates"},
                                         {"query_id": "z", "query": "", "doc_id": "a"}])
    out = tmp_path / "strict"
    code = rerank(corpus_run["config"], "--set", f"queries.uri={log}", "--set", f"output.uri={out}")
    assert code == ExitCode.REJECT_RATIO_EXCEEDED
    assert not (out / f"run_date={DAY.isoformat()}" / "_SUCCESS").exists()
    report = json.loads(next((out / "_reports").rglob("report.json")).read_text())
    rejected = report["dead_letters"]  # the path the error names
    assert rejected in report["exit"]["reason"] and rejected.endswith(f"_rejected/run_date={DAY.isoformat()}/20261127")
    rows = [r for p in sorted(Path(rejected).glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert sorted(r["reason"] for r in rows) == ["broken_json", "empty_query", "no_candidates"]
    assert not (out / "_staging").exists() or not any((out / "_staging").rglob("PREPARED.json"))  # a retry starts afresh


def test_dry_run_and_missing_hmac_key_write_nothing(corpus_run, tmp_path, capsys, monkeypatch):
    out = tmp_path / "dry"
    assert rerank(corpus_run["config"], "--dry-run", "--set", f"output.uri={out}") == ExitCode.OK
    assert '"files": 1' in capsys.readouterr().out and not out.exists()
    monkeypatch.delenv("QBATCH_TEST_HMAC", raising=False)
    code = rerank(corpus_run["config"], "--set", f"output.uri={out}", "--set", "output.redact_queries=true",
                  "--set", "output.hmac_key_env=QBATCH_TEST_HMAC")
    assert code == ExitCode.CONFIG_ERROR and "QBATCH_TEST_HMAC" in capsys.readouterr().err and not out.exists()


def test_log_and_output_on_s3(corpus_run, stdlib_pairs, s3_client, s3_bucket, s3_storage, tmp_path):
    rows = make_log(stdlib_pairs, 6, 120, seed=3, max_candidates=4)
    s3_client.put_object(Bucket=s3_bucket, Key="logs/dt=2026-11-27/part-0.jsonl",
                         Body="\n".join(json.dumps(r) for r in rows).encode())
    out = f"s3://{s3_bucket}/rerank"
    # The workers read the log and write the parts: the credentials travel in the config (never logged).
    code = rerank(corpus_run["config"], "--set", f"queries.uri=s3://{s3_bucket}/logs/", "--set", "queries.glob=dt=2026-11-27/*",
                  "--set", f"queries.storage.endpoint_url={s3_storage.endpoint_url}", "--set", f"output.uri={out}",
                  "--set", f"queries.storage.access_key_id={FAKE_ACCESS_KEY}",
                  "--set", f"queries.storage.secret_access_key={FAKE_SECRET_KEY}")
    assert code == ExitCode.OK
    table = read_rerank_partition(out, DAY, s3_storage)
    assert table.num_rows == len(rows)
    assert sorted(table.column("doc_id").to_pylist()) == sorted(r["doc_id"] for r in rows)
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert not [k for k in keys if "/_staging/" in k and not k.endswith("/")]  # prepared parts (raw queries) are gone
    reports = [s3_client.get_object(Bucket=s3_bucket, Key=k)["Body"].read().decode() for k in keys
               if k.endswith(("report.json", "report.md"))]
    assert reports and not any(FAKE_SECRET_KEY in r or FAKE_ACCESS_KEY in r for r in reports)


def test_missing_reranker_path_is_a_config_error_before_work(corpus_run, tmp_path, capsys):
    out = tmp_path / "nomodel"
    code = rerank(corpus_run["config"], "--set", f"reranker.model={tmp_path / 'no-such-model'}", "--set", f"output.uri={out}")
    assert code == ExitCode.CONFIG_ERROR and "reranker.model" in capsys.readouterr().err and not out.exists()


def test_pool_is_sized_from_the_cluster_leaving_cpu_for_the_driver():
    from qbatch.jobs.rerank.config import RerankConfig
    from qbatch.jobs.runtime.actor_pool import plan_pools

    base = {"queries": {"uri": "/tmp/log"}, "reranker": {"model": "m", "concurrency": [1, 8], "num_cpus": 4}}
    small = plan_pools("reranker", RerankConfig.model_validate(base).reranker, {"CPU": 2.0})
    assert small.concurrency == (1, 1) and small.num_cpus == 1.0 and small.torch_threads == 2
    gpu = RerankConfig.model_validate({**base, "reranker": {**base["reranker"], "num_gpus": 1}})
    for snapshot in ({"CPU": 32.0, "GPU": 3.0}, {"CPU": 32.0}):  # GPUs are the autoscaler's business
        big = plan_pools("reranker", gpu.reranker, snapshot)
        assert big.concurrency == (1, 8) and (big.num_cpus, big.num_gpus) == (4, 1) and big.torch_threads is None
