"""The rerank half of `make demo`: re-score the sample query log against the sample catalog and
print nDCG@10 / MRR@10 before and after. Without local Qwen3-Reranker weights the demo uses a small
randomly initialised Qwen3 reranker as a stand-in, and its metrics are labelled plumbing only."""

from __future__ import annotations

import datetime as dt
import json
from argparse import Namespace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
QWEN3_RERANKER = "Qwen/Qwen3-Reranker-0.6B"


def demo_reranker(out: Path) -> tuple[str, bool]:
    """(checkpoint path, is_stand_in)."""
    from jobs.demo import cached_checkpoint

    found = cached_checkpoint(QWEN3_RERANKER)
    if found:
        return found, False
    stand_in = out / "stand-in-reranker"
    if not (stand_in / "config.json").is_file():
        from pipeline.random_qwen3 import build_random_qwen3

        build_random_qwen3(stand_in, kind="reranker", hidden_size=64, num_layers=2, seed=0)
    print(f"demo: {QWEN3_RERANKER} is not available offline; reranking with a small random Qwen3 stand-in "
          "(real template and real Qwen vocabulary, untrained weights): the metrics below test plumbing, not quality")
    return str(stand_in), True


def run_demo_rerank(out: Path) -> int:
    from jobs.rerank_config import RerankConfig
    from jobs.rerank_job import run_rerank

    model, stand_in = demo_reranker(out)
    run_date = dt.date.today().isoformat()
    cfg = RerankConfig.model_validate({
        "queries": {"uri": str(EXAMPLES / "sample_query_log.jsonl"), "format": "jsonl"},
        "documents": {"source": "corpus", "corpus": {"uri": str(EXAMPLES / "sample_catalog.jsonl")},
                      "id_column": "id", "text_template": "{title}\n{brand}\n{description}"},
        "reranker": {"model": model, "max_length": 512},
        "output": {"uri": str(out / "rerank"), "run_date": run_date},
        "run": {"progress": False},
    })
    print(f"\ndemo: reranking {EXAMPLES / 'sample_query_log.jsonl'} with {model}", flush=True)
    code = run_rerank(cfg, Namespace(dry_run=False, log_format="text", log_level="WARNING", ray_address=None))
    if code != 0:
        return code
    metrics_file = out / "rerank" / "_reports" / f"run_date={run_date}" / "metrics.json"
    if metrics_file.is_file():
        overall = (json.loads(metrics_file.read_text()).get("labelled") or {}).get("overall", {})
        label = " (stand-in model: plumbing only, not quality)" if stand_in else ""
        print(f"\nrerank metrics over {overall.get('queries', 0)} labelled queries{label}:")
        for name in ("ndcg@10", "mrr@10", "recall@10"):
            if name in overall.get("before", {}):
                print(f"  {name:<10} before {overall['before'][name]:.3f}  after {overall['after'][name]:.3f}")
        print(f"  full report: {metrics_file.with_suffix('.md')}")
    return 0
