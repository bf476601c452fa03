from __future__ import annotations

import pytest

from common.errors import ConfigError
from jobs.index_config import EmbedConfig, IndexConfig
from jobs.index_dataset import plan_pools
from jobs.model_actor_pool import size_actor_pool


def test_two_cpus_get_one_actor_and_keep_a_cpu_for_reading_and_prep():
    size = size_actor_pool("embed", EmbedConfig(model="m", concurrency=[1, 4]), {"CPU": 2.0})
    assert size.concurrency == (1, 1) and size.num_cpus == 1.0 and size.cpus_left >= 1.0
    assert size.torch_threads == 2  # the one actor's torch uses both cores


def test_gpu_pools_are_capped_by_gpus_and_cpu_stages_fit_beside_them():
    cfg = IndexConfig.model_validate({"source": {"uri": "/d"},
                                      "embed": {"model": "m", "concurrency": [1, 8], "num_gpus": 1, "num_cpus": 2}})
    plan = plan_pools(cfg, {"CPU": 32.0, "GPU": 3.0})
    assert plan.embed_concurrency == (1, 3) and plan.embed_num_gpus == 1 and plan.torch_threads is None
    assert plan.prep_concurrency >= 1 and plan.prep_concurrency * plan.prep_num_cpus + 3 * 2 <= 32
    with pytest.raises(ConfigError, match="embed.num_gpus"):
        plan_pools(cfg, {"CPU": 32.0})


def test_concurrency_accepts_an_int_and_refuses_a_reversed_range():
    assert EmbedConfig(model="m", concurrency=3).concurrency == (3, 3)
    with pytest.raises(ValueError, match="concurrency"):
        EmbedConfig(model="m", concurrency=[4, 2])
