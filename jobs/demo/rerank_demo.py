"""The rerank half of `make demo`: re-score the sample query log against the sample catalog and
print nDCG@10 / MRR@10 before and after. Without local Qwen3-Reranker weights the demo uses a small
randomly initialised Qwen3 reranker as a stand-in, and its metrics are labelled plumbing only."""

from __future__ import annotations

import datetime as dt
import json
from argparse import Namespace
from pathlib import Path

from qbatch.jobs.demo.offline_models import EXAMPLES, demo_reranker


def run_demo_rerank(out: Path) -> int:
    from qbatch.jobs.rerank.config import RerankConfig
    from qbatch.jobs.rerank.job import run_rerank

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
