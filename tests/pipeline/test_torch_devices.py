from __future__ import annotations

import pytest
import torch

from qbatch.pipeline.torch_devices import (attention_implementation, cpu_multiplies_bf16_natively, default_max_batch_tokens,
                                    is_out_of_memory, pass_cost_tokens, precision_name, resolve_device, resolve_dtype)

# What torch.cpu.get_capabilities() reports (a subset; the real mapping has ~40 keys).
SAPPHIRE_RAPIDS = {"avx512_f": True, "avx512_bf16": True, "amx_bf16": True, "amx_tile": True}
COOPER_LAKE = {"avx512_f": True, "avx512_bf16": True, "amx_bf16": False, "amx_tile": False}
SKYLAKE = {"avx512_f": True, "avx512_bf16": False, "amx_bf16": False, "amx_tile": False}


def test_defaults_follow_the_hardware():
    device = resolve_device(None)
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_dtype(None, torch.device("cuda")) == torch.bfloat16
    assert default_max_batch_tokens(torch.device("cpu")) == 8192
    assert default_max_batch_tokens(torch.device("cuda")) == 65536
    # A pass's fixed cost counts as fewer tokens where each token costs more.
    assert pass_cost_tokens(torch.float32) == 64 < pass_cost_tokens(torch.bfloat16) == pass_cost_tokens(torch.float16)


@pytest.mark.parametrize("capabilities, want", [(SAPPHIRE_RAPIDS, torch.bfloat16), (COOPER_LAKE, torch.bfloat16),
                                                (SKYLAKE, torch.float32)])
def test_cpu_default_is_bf16_only_where_torch_reports_native_bf16(monkeypatch, capabilities, want):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    assert cpu_multiplies_bf16_natively() == (want == torch.bfloat16)
    assert resolve_dtype(None, torch.device("cpu")) == want
    # An explicit precision always wins, and a GPU is bf16 whatever the host CPU can do.
    assert resolve_dtype("float32", torch.device("cpu")) == torch.float32
    assert resolve_dtype(None, torch.device("cuda")) == torch.bfloat16


def test_cpu_default_is_fp32_when_torch_cannot_tell(monkeypatch):
    monkeypatch.delattr(torch.cpu, "get_capabilities")  # torch before 2.4 has no capability query
    assert not cpu_multiplies_bf16_natively()
    assert resolve_dtype(None, torch.device("cpu")) == torch.float32


def test_this_machine_follows_what_torch_reports():
    reported = torch.cpu.get_capabilities()
    native = bool(reported.get("amx_bf16") or reported.get("avx512_bf16"))
    assert resolve_dtype(None, torch.device("cpu")) == (torch.bfloat16 if native else torch.float32)
    assert precision_name(torch.bfloat16) == "bfloat16" and precision_name(torch.float32) == "float32"


def test_strings_and_objects_resolve():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    assert resolve_dtype("torch.float16", torch.device("cpu")) == torch.float16
    assert resolve_dtype(torch.float32, torch.device("cpu")) == torch.float32
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int8", torch.device("cpu"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_request_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="cuda:1"):
        resolve_device("cuda:1")


def test_sdpa_on_cpu_and_oom_detection():
    assert attention_implementation(torch.device("cpu")) == "sdpa"
    assert is_out_of_memory(torch.OutOfMemoryError("x"))
    assert not is_out_of_memory(RuntimeError("x"))
