"""Device, dtype and attention-kernel choices for the model wrappers, resolved in one place.

Accepts strings ("cpu", "cuda:1", "bfloat16") or torch objects, so job configs can stay plain text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

_DTYPE_NAMES = {
    "float32": "float32", "fp32": "float32", "float": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "half": "float16",
}

# Padded tokens per micro-batch. On CPU larger batches stop paying off early and only add latency;
# on a GPU 64k tokens keeps an 0.6B model busy without nearing memory limits.
DEFAULT_MAX_BATCH_TOKENS = {"cpu": 8192, "cuda": 65536}
# Padding a padded micro-batch may carry beyond the 2% floor rather than start another forward pass
# (see batch_planner.plan_padded_batches): what a pass costs whatever its size, in tokens of compute.
# The cost is about fixed in seconds, so in tokens it shrinks as each token costs more, as in fp32.
# Measured with short catalog texts (* = the value taken):
# - bf16 on an AMX CPU, MiniLM in 256-row calls: 0 -> 400 rows/s, 128 -> 656, 256* -> 680, 1024 -> 698
#   (at padding efficiency 0.98, 0.84, 0.78 and 0.63);
# - fp32 on an AVX2 CPU, tokens/s: MiniLM (4,000 texts) 256 -> 5.6-6.3k, 128 -> 6.6k, 64* -> 6.4-6.7k;
#   the benchmarks' mid-size Qwen3 (4,000 texts) 256 -> 7.2-7.3k, 64* -> 7.6-8.3k; Qwen3-Embedding-0.6B's
#   shape (1,024 texts) 256 -> 150, 64* -> 159, 32 -> 160, 0 -> 154.
# GPU runs of Qwen3 with flash-attn use padding-free packs instead.
PASS_COST_TOKENS = {"float32": 64, "reduced": 256}


def pass_cost_tokens(dtype: "torch.dtype") -> int:
    """A forward pass's fixed cost in tokens of compute for a model in `dtype` (see PASS_COST_TOKENS)."""
    return PASS_COST_TOKENS["float32" if precision_name(dtype) == "float32" else "reduced"]


def resolve_device(device: "str | torch.device | None") -> "torch.device":
    """`None` means the first CUDA device when there is one, else the CPU."""
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was requested but CUDA is not available on this machine")
    return resolved


# What torch.cpu.get_capabilities() reports when the CPU multiplies bf16 in hardware: AMX tiles
# (Sapphire Rapids and later) or the AVX512-BF16 dot-product instructions (Cooper Lake, Zen 4).
NATIVE_BF16_CAPABILITIES = ("amx_bf16", "avx512_bf16")


def cpu_multiplies_bf16_natively() -> bool:
    """True when torch reports AMX-BF16 or AVX512-BF16 on this CPU; False when it reports neither or
    cannot tell (an older torch without `torch.cpu.get_capabilities`)."""
    import torch

    get_capabilities = getattr(torch.cpu, "get_capabilities", None)
    if get_capabilities is None:
        return False
    capabilities = get_capabilities()
    return any(bool(capabilities.get(name)) for name in NATIVE_BF16_CAPABILITIES)


def resolve_dtype(dtype: "str | torch.dtype | None", device: "torch.device") -> "torch.dtype":
    """`None` means bf16 on CUDA and on CPUs that multiply bf16 natively, fp32 on other CPUs.

    Without native bf16 a CPU emulates it through fp32 and gains nothing; with AMX, bf16 matmuls ran 4x
    the fp32 rate here and whole models 1.6-2x, for vectors within cosine 0.999 of fp32 (README, "Precision").
    """
    import torch

    if dtype is None:
        if device.type == "cuda" or (device.type == "cpu" and cpu_multiplies_bf16_natively()):
            return torch.bfloat16
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    name = _DTYPE_NAMES.get(str(dtype).lower().removeprefix("torch."))
    if name is None:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(set(_DTYPE_NAMES.values()))}")
    return getattr(torch, name)


def precision_name(dtype: "torch.dtype") -> str:
    """"bfloat16", "float32", "float16": how reports and collection metadata name a precision."""
    return str(dtype).removeprefix("torch.")


def flash_attn_available() -> bool:
    try:
        import flash_attn  # noqa: F401
    except ImportError:  # the optional `gpu` extra is not installed
        return False
    except Exception:  # a broken CUDA build raises more than ImportError
        return False
    return True


def attention_implementation(device: "torch.device") -> str:
    """flash_attention_2 needs CUDA and the flash-attn package; SDPA everywhere else."""
    if device.type == "cuda" and flash_attn_available():
        return "flash_attention_2"
    return "sdpa"


def default_max_batch_tokens(device: "torch.device") -> int:
    return DEFAULT_MAX_BATCH_TOKENS.get(device.type, DEFAULT_MAX_BATCH_TOKENS["cpu"])


def is_out_of_memory(error: BaseException) -> bool:
    """True for the accelerator's out-of-memory error, whichever torch version raised it."""
    import torch

    oom_types: tuple[Any, ...] = tuple(
        t for t in (getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None))
        if t is not None
    )
    return isinstance(error, oom_types)


def release_cached_memory(device: "torch.device") -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
