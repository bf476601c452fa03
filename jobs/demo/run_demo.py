"""`make demo`: index the bundled sample catalog into an embedded Qdrant under ./demo-output, run the
example queries, and rerank a sample query log. Works offline: without local Qwen3 weights it says so
in one line and uses the packaged all-MiniLM-L6-v2 (production jobs never fall back: a missing model
is an error there)."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from qbatch.jobs.demo.offline_models import EXAMPLES, demo_embedding_model


def write_demo_config(out: Path, model: str) -> Path:
    cfg = out / "demo-index.toml"
    cfg.write_text(f"""# Written by `make demo`; a starting point for your own catalog config.
[source]
uri = "{EXAMPLES / 'sample_catalog.jsonl'}"
[columns]
id = "id"
text_template = "{{title}}\\n{{brand}}\\n{{description}}"
payload = ["category", "brand", "price"]
lang = "lang"
[embed]
model = "{model}"
[qdrant]
path = "{out / 'qdrant'}"
collection = "demo_catalog"
payload_indexes = {{ lang = "keyword", category = "keyword" }}
[run]
output_uri = "{out}"
run_id = "demo-{time.strftime('%Y%m%dT%H%M%S')}"
mode = "full"
keep = 2
[gates]
golden_queries = "{EXAMPLES / 'golden_queries.jsonl'}"
golden_min_recall = 0.3
""")
    return cfg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="demo-output", help="demo output folder")
    parser.add_argument("--skip-rerank", action="store_true", help="index and search only")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from qbatch.jobs import cli

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cfg = write_demo_config(out, demo_embedding_model())
    print(f"demo: indexing {EXAMPLES / 'sample_catalog.jsonl'} -> {out / 'qdrant'} (config: {cfg})", flush=True)
    code = cli.main(["index", "--config", str(cfg), "--log-level", "WARNING"])
    if code != 0:
        return code
    for query in (EXAMPLES / "sample_queries.txt").read_text(encoding="utf-8").splitlines():
        if query.strip():
            print(f"\nquery: {query}", flush=True)
            code = cli.main(["search", query, "--config", str(cfg), "--k", "3"])
            if code != 0:
                return code
    print(f"\ndemo: `qbatch index status --config {cfg}` shows the kept collections.")
    if not args.skip_rerank:
        from qbatch.jobs.demo.rerank_demo import run_demo_rerank  # imports only the models it needs

        return run_demo_rerank(out)
    return 0

