"""`qbatch index --dry-run`: everything a run checks before its first embedding, plus a token
estimate from a sample, printed as a plan. Nothing is embedded or written."""

from __future__ import annotations

import sys
from typing import TextIO

SAMPLE_ROWS = 200


def estimate_tokens(cfg, files, tokenizer, spec, sample_rows: int = SAMPLE_ROWS) -> dict:
    """Tokenise the first rows of the first file the way the prep stage does; scale by bytes."""
    from connectors.corpus_file_reader import iter_record_batches
    from pipeline.prep_stage import PrepStage

    from pipeline.embedding_tokenizer import DocumentTokenizer

    doc_tokenizer = DocumentTokenizer(tokenizer, cfg.embed.doc_instruction)
    stage = PrepStage(cfg.columns.model_dump(), cfg.chunking.model_dump(), lambda: doc_tokenizer,
                      spec.fingerprint, spec.dim, cfg.embed.doc_instruction)
    rows = tokens = chunks = rejects = 0
    sampled_bytes = 0
    for batch in iter_record_batches(files[0], cfg.source.storage, batch_rows=sample_rows):
        out = stage(batch.slice(0, sample_rows - rows))
        rows += min(batch.num_rows, sample_rows - rows)
        sampled_bytes += sum(len(r or "") for r in batch.column("_record").to_pylist()[:sample_rows])
        good = [r for r in out.to_pylist() if r["reject_reason"] is None]
        rejects += out.num_rows - len(good)
        chunks += len(good)
        tokens += sum(r["n_tokens"] for r in good)
        if rows >= sample_rows:
            break
    total_bytes = sum(f.size for f in files)
    scale = total_bytes / sampled_bytes if sampled_bytes else 0.0
    return {"sample_rows": rows, "sample_tokens": tokens, "sample_chunks": chunks, "sample_rejects": rejects,
            "est_rows": int(rows * scale), "est_tokens": int(tokens * scale), "est_chunks": int(chunks * scale)}


def print_plan(run, out: TextIO | None = None) -> dict:
    """The guard already passed (it runs before the dry-run branch); print what a run would do."""
    out = out or sys.stdout
    cfg, files = run.cfg, run.files
    est = estimate_tokens(cfg, files, run.tokenizer, run.spec)
    mode = cfg.run.mode if run.live else "full"
    plan = {
        "source": cfg.source.uri, "files": len(files), "bytes": sum(f.size for f in files),
        "alias": cfg.qdrant.collection, "live_collection": run.live or "(none yet)",
        "mode": mode + ("" if mode == cfg.run.mode else f" (alias missing: {cfg.run.mode} builds it in full)"),
        "guard": "passes", "sink": "reachable",
        "model": run.spec.fingerprint.get("model"), "dim": run.spec.dim, **est,
    }
    out.write("dry run: nothing embedded or written\n")
    for key, value in plan.items():
        out.write(f"  {key:<18} {value}\n")
    return plan
