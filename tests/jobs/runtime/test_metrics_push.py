"""Run metrics reach a Pushgateway: a real HTTP receiver on 127.0.0.1 stands in for it and records what
prometheus-client sends. A gateway that is down only costs a warning."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from qbatch.jobs.runtime.exit_codes import ExitCode
from qbatch.jobs.runtime.metrics_push import push_run_metrics
from tests.jobs.index.index_fixtures import catalog_rows, index_config, run_cli, write_corpus

MAX_REQUESTS = 20
MAX_LIFETIME_S = 600


@contextlib.contextmanager
def gateway_receiver():
    """A Pushgateway stand-in: records (method, path, body) and answers 200; stops on exit or after
    MAX_LIFETIME_S, whichever comes first."""
    received: list[tuple[str, str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def _record(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            if len(received) < MAX_REQUESTS:
                received.append((self.command, self.path, body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_PUT = do_POST = do_DELETE = _record

        def log_message(self, *args):  # keep the test output clean
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    deadline = threading.Timer(MAX_LIFETIME_S, server.shutdown)
    deadline.daemon = True
    deadline.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        deadline.cancel()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _index_report(run_id: str = "run-42") -> dict:
    return {
        "job": "index", "run_id": run_id,
        "counts": {"read": 12, "rejected_total": 3, "rejected": {"broken_json": 2, "empty_text": 1},
                   "docs_upserted": 9},
        "tokens": {"real": 480, "tokens_per_s": 96.5},
        "stages_seconds": {"total wall": 5.0},
        "gates": [{"gate": "min_size", "passed": True}, {"gate": "golden_queries", "passed": False}],
        "exit": {"code": 0, "status": "ok"},
    }


def test_push_lands_under_job_and_run_id_with_every_figure():
    with gateway_receiver() as (url, received):
        push_run_metrics(url, "qbatch_index", _index_report())
    assert [(m, p) for m, p, _ in received] == [("PUT", "/metrics/job/qbatch_index/run_id/run-42")]
    lines = received[0][2].splitlines()
    for expected in ("qbatch_rows_read 12.0", 'qbatch_rows_rejected{reason="broken_json"} 2.0',
                     'qbatch_rows_rejected{reason="empty_text"} 1.0', "qbatch_docs_upserted 9.0",
                     "qbatch_tokens 480.0", "qbatch_tokens_per_second 96.5", "qbatch_duration_seconds 5.0",
                     'qbatch_gate_passed{gate="min_size"} 1.0', 'qbatch_gate_passed{gate="golden_queries"} 0.0',
                     "qbatch_success 1.0", "qbatch_exit_code 0.0"):
        assert expected in lines, expected


def test_rerank_report_maps_its_own_keys_and_secrets_never_leave():
    report = {"job": "rerank", "run_id": "20261127", "counts": {"log_rows_read": 30, "rows_written": 20},
              "dead_letter_by_reason": {"unknown_doc sk-hidden-777": 4}, "pairs_per_s": 12.5, "wall_s": 7.0,
              "exit": {"code": int(ExitCode.REJECT_RATIO_EXCEEDED)}}
    with gateway_receiver() as (url, received):
        push_run_metrics(url, "qbatch_rerank", report, secrets=["sk-hidden-777"])
    path, body = received[0][1], received[0][2]
    assert path == "/metrics/job/qbatch_rerank/run_id/20261127"
    lines = body.splitlines()
    assert {"qbatch_rows_read 30.0", "qbatch_rows_written 20.0", "qbatch_pairs_per_second 12.5",
            'qbatch_rows_rejected{reason="unknown_doc ***"} 4.0', "qbatch_success 0.0",
            "qbatch_exit_code 6.0"} <= set(lines)
    assert "sk-hidden-777" not in body
    assert not any(line.startswith(("qbatch_tokens", "qbatch_docs_upserted")) for line in lines)  # not 0: absent


def test_push_to_a_closed_port_only_warns():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("qbatch.metrics")
    logger.addHandler(handler)
    try:
        push_run_metrics(f"http://127.0.0.1:{port}", "qbatch_index", _index_report())  # must not raise
    finally:
        logger.removeHandler(handler)
    warnings = [r for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"127.0.0.1:{port}" in warnings[0].getMessage()


def test_index_run_pushes_its_report(ray_session, tmp_path, tiny_embedding_checkpoint):
    write_corpus(tmp_path / "src", catalog_rows(8), n_files=1)
    cfg = index_config(tmp_path, str(tmp_path / "src"), tiny_embedding_checkpoint)
    with gateway_receiver() as (url, received):
        assert run_cli(["index", "--config", cfg, "--metrics-pushgateway", url]) == ExitCode.OK
    assert [p for _, p, _ in received] == ["/metrics/job/qbatch_index/run_id/r1"]
    lines = received[0][2].splitlines()
    assert {"qbatch_rows_read 8.0", "qbatch_docs_upserted 8.0", "qbatch_success 1.0"} <= set(lines)
