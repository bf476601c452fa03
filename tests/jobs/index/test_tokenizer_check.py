"""The tokenizer loads on a background thread while Ray starts, yet a checkpoint whose tokenizer does not
load still fails the run as a config error before anything is written; the prep actors get it as a
snapshot and never import transformers or torch (real tokenizer files, local Ray, Qdrant local mode)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qbatch.common.errors import ConfigError
from qbatch.jobs.index.tokenizer_check import TokenizerCheck
from qbatch.jobs.runtime.exit_codes import ExitCode
from qbatch.pipeline.embedding_tokenizer import EmbeddingTokenizer
from tests.jobs.index.index_fixtures import index_config, qdrant_at, run_cli, write_corpus
from tests.pipeline.text_samples import TEXTS

ROOT = Path(__file__).resolve().parents[3]


def _broken_copy(checkpoint, tmp_path):
    broken = tmp_path / "broken-checkpoint"
    shutil.copytree(checkpoint, broken)
    (broken / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "NoSuchModel"}}')
    return broken


def test_the_check_loads_the_tokenizer_or_names_the_model(tmp_path, tiny_embedding_checkpoint):
    good = EmbeddingTokenizer.from_pretrained(tiny_embedding_checkpoint, defer_loading=True)
    TokenizerCheck(good, "tiny").result()
    assert good.tokenize(["hello"])[0][-1] == 151643  # loaded, and Qwen3's end token applies
    broken = EmbeddingTokenizer.from_pretrained(_broken_copy(tiny_embedding_checkpoint, tmp_path), defer_loading=True)
    with pytest.raises(ConfigError, match="embed.model 'broken': its tokenizer does not load"):
        TokenizerCheck(broken, "broken").result()


def test_a_run_with_a_broken_tokenizer_stops_before_writing(ray_session, tmp_path, tiny_embedding_checkpoint, capsys):
    write_corpus(tmp_path / "src", [{"id": f"d{i}", "title": f"t{i}", "description": "x", "price": 1.0, "lang": "en"}
                                    for i in range(4)], n_files=1)
    cfg = index_config(tmp_path, str(tmp_path / "src"), _broken_copy(tiny_embedding_checkpoint, tmp_path))
    assert run_cli(["index", "--config", cfg]) == ExitCode.CONFIG_ERROR
    assert "its tokenizer does not load" in capsys.readouterr().err
    with qdrant_at(tmp_path / "qdrant") as client:
        assert client.get_collections().collections == []  # not even the run's new collection
    state = json.loads((tmp_path / "out" / "catalog" / "runs" / "r1" / "state.json").read_text())
    assert state["phase"] == "started"


def test_prep_actors_build_the_shared_tokenizer_without_transformers_or_torch(tmp_path, tiny_embedding_checkpoint):
    checkpoint = tiny_embedding_checkpoint
    check = TokenizerCheck(EmbeddingTokenizer.from_pretrained(checkpoint, defer_loading=True), "tiny")
    snapshot = tmp_path / "snapshot.json"
    snapshot.write_text(check.snapshot())
    expected = EmbeddingTokenizer.from_pretrained(checkpoint, max_length=48).tokenize(TEXTS)
    code = (
        "import json, sys\n"
        "from qbatch.jobs.index.dataset_plan import DocumentTokenizerFactory\n"
        f"factory = DocumentTokenizerFactory({str(checkpoint)!r}, 48, None, open({str(snapshot)!r}).read())\n"
        f"ids = factory().tokenize({TEXTS!r})\n"
        "print(json.dumps({'ids': ids, 'heavy': sorted(m for m in ('torch', 'transformers') if m in sys.modules)}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert result["ids"] == expected
