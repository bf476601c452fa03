"""Exit codes through the real CLI for the cases no other test reaches: a lock someone else holds and an
unexpected crash. (0, 3, 4, 5, 6 are in test_index_job.py and test_index_lifecycle.py, 2 in test_cli.py,
8 in test_resource_wait.py.)"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket

from qbatch.connectors.run_lock import LockRecord
from qbatch.jobs.runtime.exit_codes import TRANSIENT, ExitCode, is_transient
from tests.jobs.index.index_fixtures import catalog_rows, index_config, run_cli, write_corpus

RETRIED_BY_SCHEDULERS = {1, 4, 8}  # infra/README.md: the wrapper, the DAG and the CronJob retry only these


def _iso(delta_s: float) -> str:
    return (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=delta_s)).isoformat(timespec="seconds")


def test_the_codes_schedulers_retry_are_the_transient_ones():
    assert {int(c) for c in TRANSIENT} == RETRIED_BY_SCHEDULERS
    assert is_transient(ExitCode.RESOURCES_UNAVAILABLE) and not is_transient(ExitCode.LOCKED)


def test_a_lock_held_by_a_live_process_gives_locked_and_is_left_alone(tmp_path, tiny_embedding_checkpoint, capsys):
    write_corpus(tmp_path / "src", catalog_rows(8), n_files=1)
    cfg = index_config(tmp_path, str(tmp_path / "src"), tiny_embedding_checkpoint)
    lock = tmp_path / "out" / "catalog" / "LOCK"
    lock.parent.mkdir(parents=True)
    held = LockRecord(host=socket.gethostname(), pid=os.getppid(), run_id="nightly-other", acquired_at=_iso(-60),
                      expires_at=_iso(3600), token="someone-else").to_bytes()
    lock.write_bytes(held)
    code = run_cli(["index", "--config", cfg])
    assert code == ExitCode.LOCKED == 7
    assert not is_transient(code) and code not in RETRIED_BY_SCHEDULERS
    assert "nightly-other" in capsys.readouterr().err
    assert lock.read_bytes() == held  # not taken over, not released
    assert not (tmp_path / "out" / "catalog" / "runs" / "r1").exists()


def test_an_unsupported_model_is_a_config_error_not_retried(tmp_path, tiny_embedding_checkpoint, capsys):
    # Tokenizer files load fine; the loader then meets a model_type it cannot pool. A retry cannot fix
    # that, so it must not exit with a transient code.
    model = tmp_path / "bert-without-modules"
    model.mkdir()
    for f in tiny_embedding_checkpoint.iterdir():
        if f.name.startswith("tokenizer"):
            shutil.copy(f, model / f.name)
    config = json.loads((tiny_embedding_checkpoint / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    write_corpus(tmp_path / "src", catalog_rows(8), n_files=1)
    cfg = index_config(tmp_path, str(tmp_path / "src"), model)
    code = run_cli(["index", "--config", cfg])
    assert code == ExitCode.CONFIG_ERROR and not is_transient(code)
    err = capsys.readouterr().err
    assert "embed.model" in err and "model_type 'bert'" in err
    assert not (tmp_path / "out").exists()  # it failed before any run state was written


def test_an_unexpected_crash_is_an_internal_error(tmp_path, tiny_embedding_checkpoint, capsys, monkeypatch):
    """FAULT INJECTION: a bug nobody anticipated (here, the source listing raising a plain
    RuntimeError) must exit 1, the code schedulers retry, with the error on stderr."""
    import qbatch.connectors.corpus_listing as listing

    def broken_listing(source):
        raise RuntimeError("simulated bug in listing")

    monkeypatch.setattr(listing, "list_corpus_files", broken_listing)
    write_corpus(tmp_path / "src", catalog_rows(4), n_files=1)
    code = run_cli(["index", "--config", index_config(tmp_path, str(tmp_path / "src"), tiny_embedding_checkpoint)])
    assert code == ExitCode.INTERNAL_ERROR and is_transient(code) and code in RETRIED_BY_SCHEDULERS
    assert "internal error: RuntimeError: simulated bug in listing" in capsys.readouterr().err
