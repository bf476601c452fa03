from __future__ import annotations

import pytest
import torch

from pipeline.torch_devices import (attention_implementation, default_max_batch_tokens, is_out_of_memory,
                                    resolve_device, resolve_dtype)


def test_defaults_follow_the_hardware():
    device = resolve_device(None)
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_dtype(None, torch.device("cpu")) == torch.float32
    assert resolve_dtype(None, torch.device("cuda")) == torch.bfloat16
    assert default_max_batch_tokens(torch.device("cpu")) == 8192
    assert default_max_batch_tokens(torch.device("cuda")) == 65536


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
