from __future__ import annotations

import pytest

from common.errors import ConfigError
from jobs.index.config import EmbedConfig, IndexConfig
from jobs.runtime.actor_pool import plan_pools


def test_two_cpus_get_one_actor_and_keep_a_cpu_for_reading_and_prep():
    size = plan_pools("embed", EmbedConfig(model="m", concurrency=[1, 4]), {"CPU": 2.0})
    assert size.concurrency == (1, 1) and size.num_cpus == 1.0 and size.cpus_left >= 1.0
    assert size.torch_threads == 2  # the one actor's torch uses both cores


def test_gpu_pools_are_capped_by_gpus_and_cpu_stages_fit_beside_them():
    cfg = IndexConfig.model_validate({"source": {"uri": "/d"},
                                      "embed": {"model": "m", "concurrency": [1, 8], "num_gpus": 1, "num_cpus": 2}})
    plan = plan_pools("embed", cfg.embed, {"CPU": 32.0, "GPU": 3.0}, cpu_stages=True)
    assert plan.concurrency == (1, 3) and plan.num_gpus == 1 and plan.torch_threads is None
    assert plan.prep_concurrency >= 1 and plan.prep_concurrency * plan.prep_num_cpus + 3 * 2 <= 32
    with pytest.raises(ConfigError, match="embed.num_gpus"):
        plan_pools("embed", cfg.embed, {"CPU": 32.0}, cpu_stages=True)


def test_concurrency_accepts_an_int_and_refuses_a_reversed_range():
    assert EmbedConfig(model="m", concurrency=3).concurrency == (3, 3)
    with pytest.raises(ValueError, match="concurrency"):
        EmbedConfig(model="m", concurrency=[4, 2])
