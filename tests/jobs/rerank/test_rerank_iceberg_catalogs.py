"""The Iceberg format against other catalog types: Glue (moto's Glue and S3, the warehouse and output
on S3) and REST (a clearly labelled in-process stand-in backed by the SQL catalog, since no real REST
catalog server can run here: tests/fixtures/rest_catalog_standin.py). Each run commits one snapshot
that a pyiceberg scan reads back; secrets come from environment variables and stay out of the reports."""

from __future__ import annotations

import datetime as dt
import json

from qbatch.jobs.runtime.exit_codes import ExitCode
from tests.fixtures.moto_s3 import FAKE_ACCESS_KEY, FAKE_SECRET_KEY
from tests.jobs.rerank.test_job import MAX_LENGTH, jsonl, make_corpus, make_log, rerank, write_config

DAY = dt.date(2026, 11, 27)


def base_config(tmp_path, stdlib_pairs, checkpoint, output: dict, catalog: dict, extra: dict | None = None):
    corpus = jsonl(tmp_path / "corpus.jsonl", make_corpus(stdlib_pairs, 100))
    (tmp_path / "log").mkdir()
    rows = make_log(stdlib_pairs, 15, 100, seed=4, max_candidates=4)
    jsonl(tmp_path / "log" / "part-0.jsonl", rows)
    sections = {
        "queries": {"uri": str(tmp_path / "log"), "format": "jsonl"},
        "documents": {"source": "corpus", "id_column": "id", "text_column": "text"},
        "documents.corpus": {"uri": str(corpus)},
        "reranker": {"model": str(checkpoint), "max_length": MAX_LENGTH},
        "output": {"format": "iceberg", "run_date": DAY.isoformat(), **output},
        "output.catalog": {k: v for k, v in catalog.items() if not isinstance(v, dict)},
        **{f"output.catalog.{k}": v for k, v in catalog.items() if isinstance(v, dict)},
        **(extra or {}),
        "run": {"progress": False, "run_id": "cat-1"}}
    return write_config(tmp_path / "rerank.toml", sections), rows


def test_glue_catalog_on_moto_with_the_warehouse_on_s3(tmp_path, stdlib_pairs, tiny_reranker_checkpoint, ray_session,
                                                      moto_s3_endpoint, s3_bucket, s3_client, monkeypatch):
    from pyiceberg.catalog import load_catalog

    monkeypatch.setenv("QBATCH_TEST_GLUE_KEY", FAKE_SECRET_KEY)
    config, rows = base_config(tmp_path, stdlib_pairs, tiny_reranker_checkpoint,
                               {"uri": f"s3://{s3_bucket}/rerank"},
                               {"type": "glue", "name": "glue_test", "namespace": "search",
                                "properties": {"glue.endpoint": moto_s3_endpoint, "glue.region": "us-east-1",
                                               "warehouse": f"s3://{s3_bucket}/warehouse"},
                                "secret_env": {"glue.access-key-id": "AWS_ACCESS_KEY_ID",
                                               "glue.secret-access-key": "QBATCH_TEST_GLUE_KEY"}},
                               {"output.storage": {"endpoint_url": moto_s3_endpoint, "access_key_id": FAKE_ACCESS_KEY,
                                                   "secret_access_key": FAKE_SECRET_KEY}})
    assert rerank(config) == ExitCode.OK
    catalog = load_catalog("check", type="glue", **{"glue.endpoint": moto_s3_endpoint, "glue.region": "us-east-1",
                                                    "s3.endpoint": moto_s3_endpoint, "s3.region": "us-east-1"})
    table = catalog.load_table(("search", "rerank_results"))
    assert table.location().startswith(f"s3://{s3_bucket}/warehouse")
    scanned = table.scan().to_arrow()
    assert scanned.num_rows == len(rows) and set(scanned.column("run_id").to_pylist()) == {"cat-1"}
    summary = table.metadata.current_snapshot().summary.additional_properties
    assert summary["qbatch.run-id"] == "cat-1"
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    report = next(k for k in keys if k.endswith("report.json"))
    text = s3_client.get_object(Bucket=s3_bucket, Key=report)["Body"].read().decode()
    assert FAKE_SECRET_KEY not in text and json.loads(text)["iceberg"]["table"] == "search.rerank_results"


def test_rest_catalog_stand_in_with_a_token_from_the_environment(tmp_path, stdlib_pairs, tiny_reranker_checkpoint,
                                                                ray_session, monkeypatch):
    from pyiceberg.catalog import load_catalog

    from tests.fixtures.rest_catalog_standin import StandInRestCatalog

    token = "rest-token-never-in-reports-4242"
    server = StandInRestCatalog(tmp_path / "rest-catalog", token)
    url = server.start()
    try:
        monkeypatch.setenv("QBATCH_TEST_REST_TOKEN", token)
        out = tmp_path / "out"
        config, rows = base_config(tmp_path, stdlib_pairs, tiny_reranker_checkpoint, {"uri": str(out)},
                                   {"type": "rest", "name": "rest_test", "properties": {"uri": url},
                                    "secret_env": {"token": "QBATCH_TEST_REST_TOKEN"}})
        assert rerank(config) == ExitCode.OK
        table = load_catalog("check", type="rest", uri=url, token=token).load_table(("qbatch", "rerank_results"))
        assert table.scan().to_arrow().num_rows == len(rows)
        assert ("POST", "namespaces/*/tables/*") in server.requests and server.unauthorized == 0  # commits went by REST
        reports = "".join(p.read_text() for p in out.rglob("report.*") if p.suffix in (".json", ".md"))
        assert reports and token not in reports
        monkeypatch.delenv("QBATCH_TEST_REST_TOKEN")
        assert rerank(config, "--set", "run.run_id=cat-2") == ExitCode.CONFIG_ERROR  # the named variable is unset
    finally:
        server.stop()
