"""`qbatch index --dry-run` row figures against the real counts, on a corpus of mixed formats written
here: Parquet rows exact (from the footers), JSONL/CSV rows within 10% (sampled heads scaled to each
file's size), a small file read whole counted exactly, and the plan saying which is which. Rows are
shuffled with a seed, so a file's head is like its body: the premise of a head sample."""

from __future__ import annotations

import csv
import gzip
import json
import random

import pyarrow as pa
import pyarrow.parquet as pq

from qbatch.connectors.corpus_listing import list_corpus_files
from qbatch.connectors.source_config import SourceConfig
from qbatch.jobs.index.dry_run import count_rows, spread
from qbatch.jobs.runtime.exit_codes import ExitCode
from tests.jobs.index.index_fixtures import catalog_rows, index_config, qdrant_at, run_cli

TOLERANCE = 0.10
PARQUET = {"part-000.parquet": 3000, "part-001.parquet": 1200, "part-002.parquet": 800}
SAMPLED = {"part-003.jsonl": 5000, "part-004.csv": 4000, "part-006.jsonl.gz": 20000}
WHOLE = {"part-005.jsonl": 150}


def _write(path, rows: list[dict]) -> None:
    name = path.name
    if name.endswith(".parquet"):
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=500)
    elif name.endswith(".csv"):
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        text = "".join(json.dumps(r) + "\n" for r in rows).encode()
        path.write_bytes(gzip.compress(text) if name.endswith(".gz") else text)


def mixed_corpus(root) -> dict[str, int]:
    root.mkdir(parents=True)
    counts = {**PARQUET, **SAMPLED, **WHOLE}
    rows = catalog_rows(sum(counts.values()))
    random.Random(7).shuffle(rows)
    start = 0
    for name, n in sorted(counts.items()):
        _write(root / name, rows[start:start + n])
        start += n
    return counts


def _plan(stdout: str) -> dict[str, str]:
    return dict(line.split(None, 1) for line in stdout.splitlines()[1:])


def test_the_plan_counts_parquet_exactly_and_estimates_text_files_closely(tmp_path, tiny_embedding_checkpoint, capsys):
    mixed_corpus(tmp_path / "src")
    cfg = index_config(tmp_path, str(tmp_path / "src"), tiny_embedding_checkpoint)
    assert run_cli(["index", "--config", cfg, "--dry-run"]) == ExitCode.OK
    plan = _plan(capsys.readouterr().out)

    exact = sum(PARQUET.values()) + sum(WHOLE.values())
    assert int(plan["rows_exact"]) == exact
    estimated, real = int(plan["rows_estimated"]), sum(SAMPLED.values())
    assert abs(estimated - real) <= TOLERANCE * real, (estimated, real)
    assert int(plan["rows"]) == exact + estimated and int(plan["files"]) == 7
    assert int(plan["est_tokens"]) > int(plan["sample_tokens"]) > 0
    assert "rows of 3 Parquet file(s) (their footers)" in plan["exact:"]
    assert "rows of 1 JSONL/CSV file(s) read whole" in plan["exact:"]
    assert "rows_estimated (3 JSONL/CSV file(s)" in plan["estimated:"] and "1 compressed" in plan["estimated:"]
    with qdrant_at(tmp_path / "qdrant") as client:
        assert client.get_collections().collections == []
    assert not (tmp_path / "out").exists()


def test_one_parquet_file_is_counted_from_its_footer(tmp_path, tiny_embedding_checkpoint, capsys):
    # The field report: one 3,000-row Parquet file was estimated at 1,446 rows.
    (tmp_path / "src").mkdir()
    _write(tmp_path / "src" / "catalog.parquet", catalog_rows(3000))
    cfg = index_config(tmp_path, str(tmp_path / "src" / "catalog.parquet"), tiny_embedding_checkpoint)
    assert run_cli(["index", "--config", cfg, "--dry-run"]) == ExitCode.OK
    plan = _plan(capsys.readouterr().out)
    assert (plan["rows"], plan["rows_exact"], plan["rows_estimated"]) == ("3000", "3000", "0")
    assert plan["estimated:"].startswith("est_chunks, est_tokens (per-row averages")  # no row estimate


def test_each_file_is_counted_by_its_own_rule(tmp_path):
    real = mixed_corpus(tmp_path / "src")
    files = list_corpus_files(SourceConfig(uri=str(tmp_path / "src")))
    counts = count_rows(files, None)
    assert counts.parquet_files == 3 and counts.whole_files == 1 and counts.estimated_files == 3
    assert counts.compressed_estimated_files == 1
    assert counts.exact == sum(PARQUET.values()) + sum(WHOLE.values())
    assert 0 < counts.sampled_rows < sum(SAMPLED.values())
    assert abs(counts.total - sum(real.values())) <= TOLERANCE * sum(SAMPLED.values())


def test_spread_picks_evenly_and_keeps_the_ends():
    assert spread(list(range(10)), 4) == [0, 3, 6, 9]
    assert spread([1, 2], 4) == [1, 2] and spread(list(range(5)), 1) == [0]
