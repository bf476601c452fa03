"""The rerank job, old against new: what the driver costs, and how close the job runs to the model.

1. Driver cost at N and 4N log sizes (long-shape logs of real PyPI summaries: each query's text is one
   package's summary, its candidates are that package and others, the corpus is 10x the log's
   candidate set), old job (a git ref, by default the commit before the Ray Data plan) against the
   new one (this checkout), each in its own process with its own local Ray
   (benchmarks/rerank_driver_probe.py): driver CPU seconds per 1k pairs and driver peak RSS, both from
   /proc for the driver process alone, with a tiny random Qwen3 reranker so the model costs little.
2. Job against model: the new job's pairs/s, from process start to commit, divided by
   `Reranker.score_candidates` pairs/s on the same query groups, same model (random weights in
   Qwen3-Reranker-0.6B's shape, fp32) and the same torch threads.
3. The prepare phase's time (from the new job's report) for the corpus 10x the candidate set.

Ratios are measured in one run on one machine; nothing here is a pass/fail test.

    python benchmarks/bench_rerank_job.py --tsv /path/to/pypi.tsv [--queries 2000] [--candidates 20]
        [--old-ref 340352e] [--model-pairs 320] [--threads 2] [--skip-old] [--skip-model]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import subprocess
import sys
import tarfile
import tempfile
import io
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_embedder import DEFAULT_TSV, load_summaries  # noqa: E402

OLD_REF = "340352e"  # the last commit whose rerank driver read, grouped and received every row itself
PROBE = Path(__file__).with_name("rerank_driver_probe.py")
DAY = dt.date(2026, 11, 27)
# Qwen3-Reranker-0.6B's shape (its config.json): random weights, the same compute per token.
RERANKER_06B_SHAPE = dict(hidden_size=1024, num_layers=28, heads=16, kv_heads=8, head_dim=128, intermediate=3072,
                          initializer_range=0.02)


def write_inputs(folder: Path, summaries: list[str], queries: int, candidates: int, seed: int) -> tuple[Path, Path]:
    """A long-shape JSONL log and a corpus 10x its candidate set; returns (log folder, corpus file)."""
    rng = random.Random(seed)
    docs = len(summaries)
    pool = min(docs, max(queries * candidates // 10, queries + candidates))  # candidates come from this many
    (folder / "log").mkdir(parents=True, exist_ok=True)
    with open(folder / "log" / "part-0.jsonl", "w") as log:
        for q in range(queries):
            picks = [q % pool, *rng.sample(range(pool), candidates - 1)]
            for rank, d in enumerate(dict.fromkeys(picks), 1):
                log.write(json.dumps({"query_id": f"q{q:06d}", "query": summaries[q % pool], "doc_id": f"pkg-{d}",
                                      "rank": rank, "label": int(d == q % pool)}) + "\n")
    with open(folder / "corpus.jsonl", "w") as corpus:
        for d in range(min(docs, 10 * pool)):
            corpus.write(json.dumps({"id": f"pkg-{d}", "text": summaries[d]}) + "\n")
    return folder / "log", folder / "corpus.jsonl"


def write_config(path: Path, log: Path, corpus: Path, model: Path, out: Path, threads: int, extra: str = "") -> Path:
    path.write_text(f"""
[queries]
uri = "{log}"
format = "jsonl"
[documents]
source = "corpus"
id_column = "id"
text_column = "text"
[documents.corpus]
uri = "{corpus}"
[reranker]
model = "{model}"
max_length = 256
dtype = "float32"
torch_threads = {threads}
[output]
uri = "{out}"
run_date = "{DAY.isoformat()}"
[run]
progress = false
max_reject_ratio = 0.5
{extra}
""")
    return path


def old_tree(ref: str, into: Path) -> Path:
    data = subprocess.run(["git", "archive", ref], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into)
    return into


def probe(root: Path, config: Path) -> dict:
    out = subprocess.run([sys.executable, str(PROBE), "--root", str(root), "--", "--config", str(config),
                          "--log-level", "WARNING"], capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"probe failed ({out.returncode}): {out.stderr[-3000:]}")
    return json.loads(lines[-1])


def report_of(out: Path) -> dict:
    return json.loads(next(out.joinpath("_reports").rglob("report.json")).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tsv", default=DEFAULT_TSV, help="the PyPI catalog TSV (name, version, month, rank, summary)")
    parser.add_argument("--queries", type=int, default=2000, help="N: queries of the smaller log (4N the larger)")
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--old-ref", default=OLD_REF, help="git ref of the old job")
    parser.add_argument("--model-pairs", type=int, default=320, help="pairs of the job-against-model comparison")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, the same for the job and the model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-old", action="store_true", help="only the new job's driver")
    parser.add_argument("--skip-model", action="store_true", help="skip the job-against-model comparison")
    args = parser.parse_args()

    from qbatch.pipeline.random_qwen3 import build_random_qwen3

    work = Path(tempfile.mkdtemp(prefix="bench-rerank-"))
    summaries = load_summaries(args.tsv, max(40 * args.queries * args.candidates // 10, 100_000), args.seed)
    tiny = build_random_qwen3(work / "tiny-reranker", kind="reranker", initializer_range=0.3, seed=1)
    trees = {"new": ROOT} if args.skip_old else {"old": old_tree(args.old_ref, work / "old-tree"), "new": ROOT}
    rows = []
    for scale in (1, 4):
        log, corpus = write_inputs(work / f"inputs-{scale}", summaries, args.queries * scale, args.candidates, args.seed)
        for name, tree in trees.items():
            out = work / f"out-{name}-{scale}"
            config = write_config(work / f"{name}-{scale}.toml", log, corpus, tiny, out, args.threads)
            figures = probe(tree, config)
            report = report_of(out)
            pairs = report["counts"]["scored_pairs"]
            rows.append({"job": name, "scale": scale, "pairs": pairs, **figures,
                         "prepare_s": report.get("stages", {}).get("prepare"),
                         "corpus_docs": sum(1 for _ in open(corpus))})
            print(f"{name} {scale}N: {pairs} pairs, driver {figures['cpu_s']:.1f} CPU s, "
                  f"{figures['peak_rss_mb']:.0f} MB peak, wall {figures['wall_s']:.1f} s", flush=True)
    print_driver_table(rows)
    if not args.skip_model:
        model_ratio(work, summaries, args)


def print_driver_table(rows: list[dict]) -> None:
    print("\nDriver (the driver process alone, from /proc)")
    print(f"{'job':<5}{'log':>5}{'pairs':>9}{'CPU s':>8}{'CPU s/1k pairs':>16}{'peak RSS MB':>13}{'wall s':>9}"
          f"{'prepare s':>11}{'corpus docs':>13}")
    by = {(r["job"], r["scale"]): r for r in rows}
    for r in rows:
        per_k = r["cpu_s"] / r["pairs"] * 1000
        prep = f"{r['prepare_s']:.1f}" if r.get("prepare_s") else "-"
        print(f"{r['job']:<5}{str(r['scale']) + 'N':>5}{r['pairs']:>9}{r['cpu_s']:>8.1f}{per_k:>16.3f}"
              f"{r['peak_rss_mb']:>13.0f}{r['wall_s']:>9.1f}{prep:>11}{r['corpus_docs']:>13}")
    for job in ("old", "new"):
        if (job, 1) in by and (job, 4) in by:
            a, b = by[(job, 1)], by[(job, 4)]
            print(f"{job}: 4N/N driver CPU {b['cpu_s'] / a['cpu_s']:.2f}x, peak RSS {b['peak_rss_mb'] / a['peak_rss_mb']:.2f}x")
    for scale in (1, 4):
        if ("old", scale) in by and ("new", scale) in by:
            old, new = by[("old", scale)], by[("new", scale)]
            ratio = (old["cpu_s"] / old["pairs"]) / (new["cpu_s"] / new["pairs"])
            print(f"{scale}N: old/new driver CPU per pair {ratio:.1f}x")


def model_ratio(work: Path, summaries: list[str], args) -> None:
    """The new job from process start to commit, against score_candidates on the same groups."""
    import torch

    from qbatch.pipeline.random_qwen3 import build_random_qwen3
    from qbatch.pipeline.reranker import Reranker

    model = build_random_qwen3(work / "reranker-0.6b-shape", kind="reranker", seed=2, **RERANKER_06B_SHAPE)
    queries = max(1, args.model_pairs // args.candidates)
    log, corpus = write_inputs(work / "inputs-model", summaries[:50_000], queries, args.candidates, args.seed + 1)
    rows = [json.loads(line) for line in open(log / "part-0.jsonl")]
    texts = {d["id"]: d["text"] for d in map(json.loads, open(corpus))}
    groups: dict[str, tuple[str, list[str]]] = {}
    for r in rows:
        groups.setdefault(r["query_id"], (r["query"], []))[1].append(texts[r["doc_id"]])
    torch.set_num_threads(args.threads)
    reranker = Reranker.from_pretrained(model, max_length=256, dtype="float32")
    reranker.score_candidates(*next(iter(groups.values())))  # warm-up
    start = time.perf_counter()
    pairs = sum(len(reranker.score_candidates(q, docs)[0]) for q, docs in groups.values())
    model_rate = pairs / (time.perf_counter() - start)
    del reranker
    out = work / "out-model"
    config = write_config(work / "model.toml", log, corpus, model, out, args.threads)
    figures = probe(ROOT, config)
    report = report_of(out)
    job_rate = report["counts"]["scored_pairs"] / figures["wall_s"]
    print(f"\nJob against model: Qwen3-Reranker-0.6B's shape (random weights), fp32, {args.threads} torch threads, "
          f"{pairs} pairs in {len(groups)} queries")
    print(f"{'method':<52}{'pairs/s':>10}{'x model':>10}")
    print(f"{'Reranker.score_candidates, query by query':<52}{model_rate:>10.2f}{1.0:>10.2f}")
    print(f"{'qbatch rerank, process start to commit':<52}{job_rate:>10.2f}{job_rate / model_rate:>10.2f}")
    print(f"  (job wall {figures['wall_s']:.1f} s: stages {json.dumps({k: round(v, 1) for k, v in report['stages'].items()})})")


if __name__ == "__main__":
    main()
