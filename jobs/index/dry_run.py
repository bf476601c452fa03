"""`qbatch index --dry-run`: everything a run checks before its first embedding, then what the run
would read, printed as a plan that says which figures are exact and which are estimated. Nothing is
embedded or written.

Exact: files and bytes (the listing), Parquet rows (the files' footers), and the rows of JSONL/CSV
files small enough to be sampled whole. Estimated: the other JSONL/CSV rows (bytes per row measured
on a sample of heads, scaled to each file's size; connectors/corpus_row_counts.py), and tokens and
chunks (per-row averages of sampled rows run through the prep stage, times the rows)."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TextIO

SAMPLE_ROWS = 200  # rows run through the prep stage for the token estimate
TOKEN_SAMPLE_FILES = 4  # ... taken from this many files across the listing
TEXT_SAMPLE_FILES = 8  # JSONL/CSV heads sampled per format and compression
TEXT_SAMPLE_ROWS = 1000  # rows per sampled head


def spread(items: list, k: int) -> list:
    """k items evenly spaced over the list, first and last included (deterministic)."""
    if len(items) <= k:
        return list(items)
    return [items[round(i * (len(items) - 1) / (k - 1))] for i in range(k)] if k > 1 else items[:1]


@dataclass
class RowCounts:
    exact: int = 0
    estimated: int = 0
    parquet_files: int = 0
    whole_files: int = 0  # JSONL/CSV files the sample read to the end
    estimated_files: int = 0
    compressed_estimated_files: int = 0
    sampled_rows: int = 0

    @property
    def total(self) -> int:
        return self.exact + self.estimated


def count_rows(files, storage) -> RowCounts:
    """Parquet rows from footers; JSONL/CSV rows from sampled heads, pooled per format and compression."""
    from qbatch.connectors.corpus_listing import compression_from_name
    from qbatch.connectors.corpus_row_counts import TextSample, parquet_row_count, sample_text_rows

    counts = RowCounts()
    parquet = [f for f in files if f.format == "parquet"]
    with ThreadPoolExecutor(max_workers=8) as pool:  # one footer read each; remote stores are slow per request
        counts.exact += sum(pool.map(lambda f: parquet_row_count(f, storage), parquet))
    counts.parquet_files = len(parquet)
    groups: dict[tuple[str, bool], list] = {}
    for f in files:
        if f.format != "parquet":
            groups.setdefault((f.format, compression_from_name(f.uri) is not None), []).append(f)
    for (_, compressed), group in sorted(groups.items()):
        samples = {f.uri: sample_text_rows(f, storage, TEXT_SAMPLE_ROWS) for f in spread(group, TEXT_SAMPLE_FILES)}
        pooled = TextSample.pooled(samples.values())
        counts.sampled_rows += pooled.rows
        for f in group:
            sample = samples.get(f.uri)
            if sample is not None and sample.whole_file:
                counts.exact += sample.rows
                counts.whole_files += 1
            else:
                counts.estimated += (sample or pooled).rows_for(f.size)
                counts.estimated_files += 1
                counts.compressed_estimated_files += compressed
    return counts


def estimate_tokens(cfg, files, tokenizer, spec, rows: int, sample_rows: int = SAMPLE_ROWS) -> dict:
    """Run the first rows of a few files through the prep stage; scale its per-row figures to `rows`."""
    from qbatch.connectors.corpus_file_reader import iter_record_batches
    from qbatch.pipeline.embedding_tokenizer import DocumentTokenizer
    from qbatch.pipeline.prep_stage import PrepStage

    doc_tokenizer = DocumentTokenizer(tokenizer, cfg.embed.doc_instruction)
    stage = PrepStage(cfg.columns.model_dump(), cfg.chunking.model_dump(), lambda: doc_tokenizer,
                      spec.fingerprint, spec.dim, cfg.embed.doc_instruction)
    picked = spread(files, TOKEN_SAMPLE_FILES)
    per_file = -(-sample_rows // len(picked))
    seen = tokens = chunks = rejects = 0
    for file in picked:
        batch = next(iter_record_batches(file, cfg.source.storage, batch_rows=per_file), None)
        if batch is None:
            continue
        out = stage(batch)
        good = [r for r in out.to_pylist() if r["reject_reason"] is None]
        seen += batch.num_rows
        rejects += out.num_rows - len(good)
        chunks += len(good)
        tokens += sum(r["n_tokens"] for r in good)
    scale = rows / seen if seen else 0.0
    return {"sample_rows": seen, "sample_tokens": tokens, "sample_chunks": chunks, "sample_rejects": rejects,
            "est_chunks": round(chunks * scale), "est_tokens": round(tokens * scale)}


def describe(counts: RowCounts, token_rows: int) -> list[str]:
    """Which figures are exact and which are estimated, and from what, for the lines under the plan."""
    exact = ["files, bytes (the listing)"]
    if counts.parquet_files:
        exact.append(f"rows of {counts.parquet_files} Parquet file(s) (their footers)")
    if counts.whole_files:
        exact.append(f"rows of {counts.whole_files} JSONL/CSV file(s) read whole")
    estimated = []
    if counts.estimated_files:
        note = (f"rows_estimated ({counts.estimated_files} JSONL/CSV file(s): bytes per row of {counts.sampled_rows} "
                "rows sampled from file heads, scaled to each file's size")
        if counts.compressed_estimated_files:
            note += (f"; {counts.compressed_estimated_files} compressed, scaled by compressed bytes, so a head "
                     "that compresses unlike the rest skews it")
        estimated.append(note + ")")
    estimated.append(f"est_chunks, est_tokens (per-row averages of {token_rows} rows run through the prep stage)")
    return ["exact: " + "; ".join(exact), "estimated: " + "; ".join(estimated)]


def print_plan(run, out: TextIO | None = None) -> dict:
    """The guard already passed (it runs before the dry-run branch); print what a run would do."""
    out = out or sys.stdout
    cfg, files = run.cfg, run.files
    counts = count_rows(files, cfg.source.storage)
    est = estimate_tokens(cfg, files, run.tokenizer, run.spec, counts.total)
    mode = cfg.run.mode if run.live else "full"
    plan = {
        "source": cfg.source.uri, "files": len(files), "bytes": sum(f.size for f in files),
        "alias": cfg.qdrant.collection, "live_collection": run.live or "(none yet)",
        "mode": mode + ("" if mode == cfg.run.mode else f" (alias missing: {cfg.run.mode} builds it in full)"),
        "guard": "passes", "sink": "reachable",
        "model": run.spec.fingerprint.get("model"), "dim": run.spec.dim,
        "rows": counts.total, "rows_exact": counts.exact, "rows_estimated": counts.estimated, **est,
    }
    out.write("dry run: nothing embedded or written\n")
    for key, value in plan.items():
        out.write(f"  {key:<18} {value}\n")
    for line in describe(counts, est["sample_rows"]):
        out.write(f"  {line}\n")
    return plan
