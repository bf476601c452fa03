"""GPU check for qbatch's model paths. It needs only torch, transformers and numpy: no Ray, no Qdrant, no
tokenizer (the ids are random) and no network.

    python benchmarks/gpu_check.py               # one CUDA GPU, bf16, 0.6B shapes; under 5 minutes on an H200
    python benchmarks/gpu_check.py --cpu-smoke   # tiny shapes, fp32, CPU; the same code paths except flash-attn

On a bare GPU box (torch, transformers and numpy; no qbatch install) it runs from a plain copy of the
repository as it is: benchmarks/checkout_package.py makes `import qbatch` load that copy's code.

(a) parity: packed texts (position ids restart per text, attention_mask=None, use_cache=False) must give
    the same last-token vectors as a left-padded SDPA batch. The packed run uses flash-attn varlen
    (`flash_attention_2`) when flash-attn imports on CUDA. Otherwise it uses SDPA with the
    block-diagonal mask that transformers derives from the position restarts. The report says which
    ran. A negative control (one long text, no restarts) shows the check would see a leak across texts.
(b) embedding throughput of a Qwen3-Embedding-0.6B-shaped random model on log-normal lengths, in
    length-sorted token-budget batches (padded) and packs, with MFU against 989 TFLOP/s (H100/H200
    dense bf16). Useful FLOPs count real tokens only:
        FLOPs = 2 * P_nonemb * sum(L_i) + 2 * n_layers * n_heads * head_dim * sum(L_i^2)
    P_nonemb covers the q/k/v/o projections and the MLP. The second term is QK^T plus AV under a
    causal mask: 4 * d_attn * L^2 / 2 per layer, with d_attn = n_heads * head_dim.
(c) reranker pairs/s of a 0.6B-shaped Qwen3ForCausalLM: every pair run in full, against the shared
    query prefix run once with use_cache=True and its KV expanded over the candidates. The tails are
    fed with position ids offset by the prefix length. Scores are sigmoid(h_last . (W[yes] - W[no])).
    A wide-init tiny model checks that both paths give the same scores.

The padded, packed and shared-prefix paths are qbatch's own (pipeline/), so this measures what the jobs
run. The script exits 1 if a parity check fails; timings never fail it.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checkout_package import use_checkout  # noqa: E402

use_checkout()  # a plain copy of the repository, with or without qbatch installed

import numpy as np  # noqa: E402
import torch  # noqa: E402

from qbatch.pipeline.batch_counters import BatchCounters  # noqa: E402
from qbatch.pipeline.batch_planner import plan_packs, plan_padded_batches  # noqa: E402
from qbatch.pipeline.embedding_forward import forward_packed, forward_padded  # noqa: E402
from qbatch.pipeline.micro_batch_runner import run_micro_batches  # noqa: E402
from qbatch.pipeline.model_inputs import pad_ids  # noqa: E402

PEAK_BF16_FLOPS = 989e12  # H100/H200 SXM dense bf16
VOCAB = 151669
PAD_ID = 151643
YES_ID, NO_ID = 9693, 2152
COSINE_MIN = 0.999


@dataclasses.dataclass(frozen=True)
class Shape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int

    def nonembedding_params(self) -> int:
        d_q, d_kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        per_layer = self.hidden * d_q + 2 * self.hidden * d_kv + d_q * self.hidden + 3 * self.hidden * self.intermediate
        return self.layers * per_layer

    def flops(self, lengths: np.ndarray) -> float:
        lengths = lengths.astype(np.float64)
        return (2.0 * self.nonembedding_params() * lengths.sum()
                + 2.0 * self.layers * self.heads * self.head_dim * float((lengths ** 2).sum()))


QWEN3_06B = Shape(hidden=1024, layers=28, heads=16, kv_heads=8, head_dim=128, intermediate=3072)
TINY = Shape(hidden=64, layers=2, heads=4, kv_heads=2, head_dim=16, intermediate=128)
PARITY_GPU = Shape(hidden=256, layers=4, heads=4, kv_heads=2, head_dim=64, intermediate=512)


@dataclasses.dataclass(frozen=True)
class Plan:
    device: torch.device
    dtype: torch.dtype
    big: Shape
    parity: Shape
    parity_texts: int
    parity_max_len: int
    embed_docs: int
    embed_median: int
    embed_max: int
    batch_tokens: int
    queries: int
    candidates: int
    tail_median: int
    cos_min: float
    score_tol: float


def make_plan(cpu_smoke: bool) -> Plan:
    if cpu_smoke:
        return Plan(torch.device("cpu"), torch.float32, TINY, TINY, parity_texts=8, parity_max_len=48,
                    embed_docs=48, embed_median=24, embed_max=160, batch_tokens=4096,
                    queries=3, candidates=8, tail_median=24, cos_min=COSINE_MIN, score_tol=1e-4)
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device; run with --cpu-smoke for the CPU check")
    return Plan(torch.device("cuda"), torch.bfloat16, QWEN3_06B, PARITY_GPU, parity_texts=32, parity_max_len=1024,
                embed_docs=6000, embed_median=256, embed_max=4096, batch_tokens=65536,
                queries=64, candidates=100, tail_median=96, cos_min=COSINE_MIN, score_tol=2e-2)


# ---------------------------------------------------------------------------------------------- models

def flash_attn_importable() -> bool:
    try:
        import flash_attn  # noqa: F401
    except Exception:  # a broken CUDA build raises more than ImportError
        return False
    return True


def packed_attention(device: torch.device) -> tuple[str, str]:
    """(attn_implementation, description) of the packed path on this machine."""
    if device.type == "cuda" and flash_attn_importable():
        return "flash_attention_2", "flash-attn varlen (flash_attention_2)"
    return "sdpa", "SDPA, block-diagonal mask from position_ids (flash-attn not available)"


def build(kind: str, shape: Shape, attn: str, plan: Plan, std: float, seed: int = 0) -> Any:
    """A seeded random Qwen3 of `shape`, built directly on the device. `kind` is 'embedding' or 'reranker'."""
    from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3Model

    config = Qwen3Config(
        vocab_size=VOCAB, hidden_size=shape.hidden, num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads, head_dim=shape.head_dim,
        intermediate_size=shape.intermediate, initializer_range=std, max_position_embeddings=32768,
        rope_theta=1_000_000.0, tie_word_embeddings=True, pad_token_id=PAD_ID, attn_implementation=attn)
    torch.manual_seed(seed)
    with torch.device(plan.device):
        model = (Qwen3Model if kind == "embedding" else Qwen3ForCausalLM)(config)
    return model.to(plan.dtype).eval()


def with_attention(model: Any, attn: str) -> Any:
    """The same weights under another attention implementation."""
    if model.config._attn_implementation == attn:
        return model
    with torch.device(model.device):
        twin = type(model)(_config_with(model.config, attn)).to(dtype=model.dtype).eval()
    twin.load_state_dict(model.state_dict())
    return twin


def _config_with(config: Any, attn: str) -> Any:
    import copy

    new = copy.deepcopy(config)
    new._attn_implementation = attn
    return new


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def lognormal_lengths(rng: np.random.Generator, n: int, median: int, sigma: float, lo: int, hi: int) -> np.ndarray:
    return np.clip(np.round(rng.lognormal(math.log(median), sigma, n)), lo, hi).astype(np.int64)


def random_ids(rng: np.random.Generator, lengths: np.ndarray, last: int | None = None) -> list[list[int]]:
    """Random ids below the added tokens; `last` replaces each text's final id (the embedding's end token)."""
    out = []
    for n in lengths.tolist():
        ids = rng.integers(0, PAD_ID, size=n).tolist()
        if last is not None:
            ids[-1] = last
        out.append(ids)
    return out


def unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=-1)


# ---------------------------------------------------------------------------------------------- (a)

def check_parity(plan: Plan, rng: np.random.Generator, rows: list[tuple[str, str, str]]) -> bool:
    attn, described = packed_attention(plan.device)
    # A wide init makes each last-token state depend on its context (QWEN3.md), so a mask error shows.
    padded_model = build("embedding", plan.parity, "sdpa", plan, std=0.2, seed=1)
    packed_model = with_attention(padded_model, attn)
    lengths = lognormal_lengths(rng, plan.parity_texts, max(8, plan.parity_max_len // 8), 0.9, 2, plan.parity_max_len)
    ids = random_ids(rng, lengths, last=PAD_ID)

    reference = unit(forward_padded(padded_model, ids, PAD_ID, left_padded=True, pooling="lasttoken", device=plan.device))
    packed = unit(forward_packed(packed_model, ids, plan.device))
    cosine = (reference * packed).sum(-1)

    # Negative control: the same pack read as one long text (positions never restart) lets texts attend
    # to the ones before them. A check that cannot tell this apart from parity would prove nothing.
    flat = torch.tensor([[t for seq in ids for t in seq]], device=plan.device)
    ends = torch.as_tensor(np.cumsum(lengths) - 1, device=plan.device)
    with torch.inference_mode():
        leaked = packed_model(input_ids=flat, position_ids=torch.arange(flat.shape[1], device=plan.device)[None],
                              attention_mask=None, use_cache=False).last_hidden_state[0, ends]
    leak_cos = (reference * unit(leaked)).sum(-1)[1:]  # the first text has nothing before it

    ok = bool(cosine.min() >= plan.cos_min)
    discriminates = bool(leak_cos.min() < plan.cos_min)
    rows.append(("(a) packed path", described, ""))
    rows.append(("(a) texts / tokens", f"{len(ids)} / {int(lengths.sum())}", f"lengths {lengths.min()}..{lengths.max()}"))
    rows.append(("(a) packed-vs-padded cosine (min)", f"{float(cosine.min()):.6f}",
                 f"{'PASS' if ok else 'FAIL'} (>= {plan.cos_min}; mean {float(cosine.mean()):.6f})"))
    rows.append(("(a) negative control cosine (min)", f"{float(leak_cos.min()):.6f}",
                 "ok: a cross-text leak would be caught" if discriminates else "WEAK: the check cannot see a leak"))
    return ok


# ---------------------------------------------------------------------------------------------- (b)

def timed(plan: Plan, fn: Callable[[], Any]) -> float:
    sync(plan.device)
    start = time.perf_counter()
    fn()
    sync(plan.device)
    return time.perf_counter() - start


def bench_embedding(plan: Plan, rng: np.random.Generator, rows: list[tuple[str, str, str]]) -> None:
    attn, _ = packed_attention(plan.device)
    padded_model = build("embedding", plan.big, "sdpa", plan, std=0.02)
    packed_model = with_attention(padded_model, attn)
    lengths = lognormal_lengths(rng, plan.embed_docs, plan.embed_median, 0.8, 4, plan.embed_max)
    ids = random_ids(rng, lengths, last=PAD_ID)
    flops = plan.big.flops(lengths)
    # A dense T x T mask for a pack of T tokens: without flash-attn, keep packs small.
    pack_tokens = plan.batch_tokens if attn == "flash_attention_2" else min(plan.batch_tokens, 8192)

    def run_padded(subset: list[list[int]]) -> int:
        computed = 0
        for batch in plan_padded_batches([len(x) for x in subset], plan.batch_tokens):
            forward_padded(padded_model, [subset[i] for i in batch.indices], PAD_ID, True, "lasttoken", plan.device)
            computed += batch.padded_tokens
        return computed

    def run_packed(subset: list[list[int]]) -> int:
        for pack in plan_packs([len(x) for x in subset], pack_tokens):
            forward_packed(packed_model, [subset[i] for i in pack.indices], plan.device)
        return sum(len(x) for x in subset)

    rows.append(("(b) model", f"{plan.big.nonembedding_params() / 1e6:.0f}M non-embedding params",
                 f"{plan.big.layers} layers, hidden {plan.big.hidden}, {plan.dtype}".replace("torch.", "")))
    rows.append(("(b) workload", f"{len(ids)} texts, {int(lengths.sum())} tokens",
                 f"log-normal, median {int(np.median(lengths))}, max {int(lengths.max())}"))
    for name, run, budget in (("padded SDPA", run_padded, plan.batch_tokens), (f"packed {attn}", run_packed, pack_tokens)):
        run(ids[: max(4, len(ids) // 20)])  # warm-up: kernels, allocator
        computed = [0]
        seconds = timed(plan, lambda: computed.__setitem__(0, run(ids)))
        tps = lengths.sum() / seconds
        mfu = f"MFU {flops / seconds / PEAK_BF16_FLOPS:.1%}" if plan.device.type == "cuda" else "MFU n/a on CPU"
        rows.append((f"(b) {name} tokens/s", f"{tps:,.0f}",
                     f"{mfu}; budget {budget}; padding eff. {lengths.sum() / computed[0]:.2f}"))
    del padded_model, packed_model


# ---------------------------------------------------------------------------------------------- (c)

def yes_no_direction(model: Any) -> torch.Tensor:
    head = model.get_output_embeddings().weight
    return (head[YES_ID] - head[NO_ID]).float()


def score_full(model: Any, seqs: list[list[int]], plan: Plan) -> np.ndarray:
    """The official way: every pair left-padded in full, the last position's yes/no logit difference."""
    base, direction = model.get_decoder(), yes_no_direction(model)

    def run_one(batch):
        ids, mask = pad_ids([seqs[i] for i in batch.indices], PAD_ID, left=True, device=plan.device)
        with torch.inference_mode():
            hidden = base(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state[:, -1]
            return torch.sigmoid(hidden.float() @ direction).cpu().numpy()

    return run_micro_batches(plan_padded_batches([len(s) for s in seqs], plan.batch_tokens), run_one, plan.device)


def score_shared(model: Any, head: list[int], tails: list[list[int]], plan: Plan) -> tuple[np.ndarray, str]:
    """Shared-prefix scores via qbatch's pipeline; a local port if this transformers' cache API differs."""
    from qbatch.pipeline.reranker_prefix_sharing import score_shared_tails

    base, direction = model.get_decoder(), yes_no_direction(model)

    def to_scores(hidden: torch.Tensor) -> np.ndarray:
        return torch.sigmoid(hidden.float() @ direction).cpu().numpy()

    try:
        return score_shared_tails(base, head, tails, to_scores, pad_id=PAD_ID, max_batch_tokens=plan.batch_tokens,
                                  device=plan.device, counters=BatchCounters()), "pipeline"
    except (TypeError, AttributeError) as error:
        return _score_shared_portable(base, head, tails, to_scores, plan), f"portable ({type(error).__name__}: {error})"


def _score_shared_portable(base: Any, head: list[int], tails: list[list[int]],
                           to_scores: Callable[[torch.Tensor], np.ndarray], plan: Plan) -> np.ndarray:
    from transformers import DynamicCache

    cache_kwarg = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
    with torch.inference_mode():
        out = base(input_ids=torch.tensor([head], device=plan.device), use_cache=True)
    cache = getattr(out, "cache", None) or out.past_key_values
    head_kv = ([(layer.keys, layer.values) for layer in cache.layers] if hasattr(cache, "layers")
               else list(zip(cache.key_cache, cache.value_cache)))
    n_head = len(head)

    def run_one(batch):
        ids, tail_mask = pad_ids([tails[i] for i in batch.indices], PAD_ID, left=False, device=plan.device)
        n, width = ids.shape
        mask = torch.cat([torch.ones(n, n_head, dtype=tail_mask.dtype, device=plan.device), tail_mask], dim=1)
        positions = (torch.arange(width, device=plan.device) + n_head).unsqueeze(0).expand(n, -1)
        expanded = DynamicCache()
        for layer, (k, v) in enumerate(head_kv):
            expanded.update(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1), layer)
        with torch.inference_mode():
            hidden = base(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                          **{cache_kwarg: expanded}).last_hidden_state
            return to_scores(hidden[torch.arange(n, device=plan.device), tail_mask.sum(dim=1) - 1])

    return run_micro_batches(plan_padded_batches([n_head + len(t) for t in tails], plan.batch_tokens), run_one,
                             plan.device)


def rerank_workload(rng: np.random.Generator, queries: int, candidates: int, tail_median: int) -> list[tuple[list[int], list[list[int]]]]:
    """Per query: a shared head (template prefix + instruction + query, ~70-90 tokens) and candidate tails
    (document + the 9-token assistant suffix)."""
    out = []
    for q_len in lognormal_lengths(rng, queries, 8, 0.5, 2, 40).tolist():
        head = rng.integers(0, PAD_ID, size=64 + q_len).tolist()
        tails = random_ids(rng, lognormal_lengths(rng, candidates, tail_median, 0.6, 4, 1024) + 9)
        out.append((head, tails))
    return out


def check_rerank_parity(plan: Plan, rng: np.random.Generator, rows: list[tuple[str, str, str]]) -> bool:
    model = build("reranker", plan.parity, packed_attention(plan.device)[0], plan, std=0.2, seed=2)
    worst, impl = 0.0, ""
    for head, tails in rerank_workload(rng, 4, 8, 24):
        full = score_full(model, [head + t for t in tails], plan)
        shared, impl = score_shared(model, head, tails, plan)
        worst = max(worst, float(np.abs(full - shared).max()))
    ok = worst <= plan.score_tol
    rows.append(("(c) shared-prefix path", impl, ""))
    rows.append(("(c) shared-vs-full |score diff| (max)", f"{worst:.2e}",
                 f"{'PASS' if ok else 'FAIL'} (<= {plan.score_tol:g}; wide-init tiny model)"))
    return ok


def bench_rerank(plan: Plan, rng: np.random.Generator, rows: list[tuple[str, str, str]]) -> None:
    model = build("reranker", plan.big, packed_attention(plan.device)[0], plan, std=0.02)
    work = rerank_workload(rng, plan.queries, plan.candidates, plan.tail_median)
    pairs = sum(len(t) for _, t in work)
    full_tokens = sum(len(h) * len(t) + sum(map(len, t)) for h, t in work)
    shared_tokens = sum(len(h) + sum(map(len, t)) for h, t in work)

    def run_full():
        for head, tails in work:
            score_full(model, [head + t for t in tails], plan)

    def run_shared():
        for head, tails in work:
            score_shared(model, head, tails, plan)

    head, tails = work[0]
    score_full(model, [head + t for t in tails], plan)  # warm-up
    score_shared(model, head, tails, plan)
    t_full, t_shared = timed(plan, run_full), timed(plan, run_shared)
    rows.append(("(c) workload", f"{len(work)} queries x {plan.candidates} candidates",
                 f"tokens run: full {full_tokens:,}, shared {shared_tokens:,}"))
    rows.append(("(c) full pairs/s", f"{pairs / t_full:,.0f}", f"{t_full:.2f} s"))
    rows.append(("(c) shared-prefix pairs/s", f"{pairs / t_shared:,.0f}",
                 f"{t_shared:.2f} s; speed-up x{t_full / t_shared:.2f}"))


# ---------------------------------------------------------------------------------------------- main

def print_table(rows: list[tuple[str, str, str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    line = "+-" + "-+-".join("-" * w for w in widths) + "-+"
    print(line)
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
    print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny shapes, fp32, CPU (< 60 s)")
    parser.add_argument("--skip-bench", action="store_true", help="parity checks only")
    args = parser.parse_args(argv)

    plan = make_plan(args.cpu_smoke)
    if plan.device.type == "cpu":
        torch.set_num_threads(min(4, torch.get_num_threads()))
    import transformers

    name = torch.cuda.get_device_name(plan.device) if plan.device.type == "cuda" else "CPU"
    rows: list[tuple[str, str, str]] = [
        ("device", name, f"torch {torch.__version__}, transformers {transformers.__version__}, "
                         f"flash-attn {'yes' if flash_attn_importable() else 'no'}"),
    ]
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    ok = check_parity(plan, rng, rows)
    ok = check_rerank_parity(plan, rng, rows) and ok
    if not args.skip_bench:
        bench_embedding(plan, rng, rows)
        bench_rerank(plan, rng, rows)
    rows.append(("total wall time", f"{time.perf_counter() - started:.1f} s", "PASS" if ok else "FAIL"))
    print_table(rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
