"""Reranker throughput: qbatch (with and without the shared query prefix) vs the official snippet.

One query scores 50 candidates, as in a top-50 rerank. Queries and documents are real PyPI package
summaries; the checkpoint is a random-weight Qwen3ForCausalLM with the real Qwen vocabulary. qbatch
runs in its default precision (bf16 on a CPU that multiplies bf16 natively, else fp32) and pinned to
fp32, the snippet's precision. Not a pass/fail test.

    python benchmarks/bench_reranker.py [--n 100] [--tsv PATH] [--seed 0] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_embedder import (DEFAULT_TSV, MODEL_SHAPE, add_threads_argument, best_of_rounds,  # noqa: E402
                                       load_summaries, print_table, set_threads)

CANDIDATES = 50
SNIPPET = "official snippet, batches of 8, full-vocab logits"
SNIPPET_LAST = "snippet, batches of 8, head at last position"
SHARED_FP32 = "qbatch fp32 score_candidates (shared prefix KV)"


def snippet_rerank(model, tokenizer, pairs: list[tuple[str, str]], batch_size: int = 8, max_length: int = 8192,
                   last_only: bool = False) -> tuple[np.ndarray, int]:
    """The model-card snippet: padded batches in input order, LM head over every position and the vocab."""
    import torch

    from tests.pipeline.qwen3_reference import PREFIX, SUFFIX, TASK

    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    prefix = tokenizer.encode(PREFIX, add_special_tokens=False)
    suffix = tokenizer.encode(SUFFIX, add_special_tokens=False)
    out, padded = [], 0
    for start in range(0, len(pairs), batch_size):
        texts = [f"<Instruct>: {TASK}\n<Query>: {q}\n<Document>: {d}" for q, d in pairs[start:start + batch_size]]
        enc = tokenizer(texts, padding=False, truncation="longest_first", return_attention_mask=False,
                        max_length=max_length - len(prefix) - len(suffix))
        enc["input_ids"] = [prefix + ids + suffix for ids in enc["input_ids"]]
        batch = tokenizer.pad(enc, padding=True, return_tensors="pt")
        padded += int(batch["input_ids"].numel())
        with torch.no_grad():
            kwargs = {"logits_to_keep": 1} if last_only else {}
            logits = model(**batch, **kwargs).logits[:, -1, :]
        two = torch.stack([logits[:, no], logits[:, yes]], dim=1).float()
        out.append(torch.log_softmax(two, dim=1)[:, 1].exp().numpy())
    return np.concatenate(out), padded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help=f"pairs to score ({CANDIDATES} per query)")
    parser.add_argument("--tsv", default=DEFAULT_TSV, help="package TSV with a summary column")
    parser.add_argument("--seed", type=int, default=0, help="sampling and weight seed")
    parser.add_argument("--repeats", type=int, default=3, help="round-robin rounds; the best time counts")
    add_threads_argument(parser)
    args = parser.parse_args()

    import torch
    set_threads(args.threads)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from qbatch.pipeline import Reranker
    from qbatch.pipeline.random_qwen3 import build_random_qwen3

    n_queries = max(1, args.n // CANDIDATES)
    texts = load_summaries(args.tsv, n_queries * (CANDIDATES + 1), args.seed)
    queries = [" ".join(t.split()[:8]) for t in texts[:n_queries]]
    docs = [texts[n_queries + q * CANDIDATES: n_queries + (q + 1) * CANDIDATES] for q in range(n_queries)]
    pairs = [(q, d) for q, ds in zip(queries, docs) for d in ds]
    with tempfile.TemporaryDirectory(prefix="bench-qwen3-") as tmp:
        path = build_random_qwen3(Path(tmp) / "reranker", kind="reranker", seed=args.seed, **MODEL_SHAPE)
        default = Reranker.from_pretrained(path, device="cpu")  # the precision rule of torch_devices.resolve_dtype
        shared = Reranker.from_pretrained(path, device="cpu", dtype="float32")
        plain = Reranker.from_pretrained(path, device="cpu", dtype="float32")
        n_params = sum(p.numel() for p in shared.model.parameters())
        print(f"model: random Qwen3ForCausalLM {MODEL_SHAPE} = {n_params / 1e6:.1f}M params (tied head); "
              f"torch threads {torch.get_num_threads()}; {n_queries} queries x {CANDIDATES} PyPI summaries; "
              f"qbatch default precision on this CPU: {default.precision}")
        ref_model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        ref_tok = AutoTokenizer.from_pretrained(path)

        warm = pairs[:16]  # one-off allocation costs stay out of the timings
        default.score_candidates(warm[0][0], [d for _, d in warm])
        shared.score_candidates(warm[0][0], [d for _, d in warm]), plain.score(warm)
        snippet_rerank(ref_model, ref_tok, warm), snippet_rerank(ref_model, ref_tok, warm, last_only=True)
        default.reset_counters(), shared.reset_counters(), plain.reset_counters()

        def run_shared(reranker) -> np.ndarray:
            return np.concatenate([reranker.score_candidates(q, ds)[0] for q, ds in zip(queries, docs)])

        runs = best_of_rounds({
            "default": lambda: run_shared(default),
            "shared": lambda: run_shared(shared),
            "plain": lambda: plain.score(pairs),
            "last": lambda: snippet_rerank(ref_model, ref_tok, pairs, last_only=True),
        }, args.repeats)
        # The full-vocabulary snippet is 10x slower than the rest; one run keeps the benchmark short,
        # and at that length other processes' load is a small share of its time.
        runs.update(best_of_rounds({"snippet": lambda: snippet_rerank(ref_model, ref_tok, pairs)}, 1))
        (ours, t_shared), (flat, t_plain) = runs["shared"], runs["plain"]
        fast, t_fast = runs["default"]
        ((snip, snip_padded), t_snip), ((snip_last, _), t_snip_last) = runs["snippet"], runs["last"]

    real = plain.counters.real_tokens // args.repeats  # counters add up over the rounds
    print(f"tokens per pair: mean {real / len(pairs):.1f} (template + query + document); shared path computed "
          f"{shared.counters.computed_tokens // args.repeats} tokens vs {plain.counters.computed_tokens // args.repeats} unshared")
    print(f"agreement (max |score diff|): shared fp32 vs snippet {np.abs(ours - snip).max():.2e}, "
          f"unshared fp32 vs snippet {np.abs(flat - snip).max():.2e}, last-position snippet "
          f"{np.abs(snip_last - snip).max():.2e}; shared {default.precision} vs snippet (fp32) "
          f"{np.abs(fast - snip).max():.2e} (scores: std {snip.std():.3f})")
    n = len(pairs)
    print_table("Rerank throughput (same process, same checkpoint, CPU; the snippets in fp32)", "pairs/s", [
        (f"qbatch default ({default.precision}) score_candidates", n / t_fast, default.counters.padding_efficiency),
        (SHARED_FP32, n / t_shared, shared.counters.padding_efficiency),
        ("qbatch fp32 score (sorted batches, no sharing)", n / t_plain, plain.counters.padding_efficiency),
        (SNIPPET, n / t_snip, real / snip_padded),
        (SNIPPET_LAST, n / t_snip_last, real / snip_padded),
    ], {"snippet": SNIPPET, "last-pos": SNIPPET_LAST, "qb fp32": SHARED_FP32})
    print(f"\nwall seconds (best of {args.repeats}; full-vocab snippet: 1 run): default {t_fast:.1f}, shared fp32 "
          f"{t_shared:.1f}, unshared fp32 {t_plain:.1f}, snippet {t_snip:.1f}, last-position snippet {t_snip_last:.1f}")
    print("note: this tiny model's 151669-row LM head is ~5x its 8 layers of compute (0.6B: ~0.35x), so the "
          "'x snippet' column overstates what skipping the full head buys at scale; 'x last-pos' excludes it.")


if __name__ == "__main__":
    main()
