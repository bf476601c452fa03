"""What the embedding and reranker actor pools share: their config fields and how they are sized
from the cluster's resources. An actor pool that reserves every CPU starves the read and prep
stages (on 2 CPUs two 1-CPU actors stalled a whole job), so sizing always leaves CPU for them."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

from common.errors import ConfigError


class ModelActorPoolConfig(BaseModel):
    """Base of a model section that runs in a Ray actor pool."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(..., description="checkpoint path or hub name")
    dtype: str | None = Field(None, description="float32, bfloat16, float16; none = bf16 on GPU, fp32 on CPU")
    device: str | None = Field(None, description="cpu, cuda, cuda:1; none = cuda if available")
    max_batch_tokens: int | None = Field(None, ge=16, description="padded tokens per micro-batch; none = per-device default")
    concurrency: tuple[int, int] = Field((1, 1), description="actors as [min, max]")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per actor")
    num_cpus: float = Field(1.0, gt=0, description="CPUs reserved per actor")
    torch_threads: int | None = Field(None, ge=1, description="CPU only: torch threads per actor; none = cores / actors")

    @field_validator("concurrency", mode="before")
    @classmethod
    def _int_or_pair(cls, v):
        return (v, v) if isinstance(v, int) else v

    @field_validator("concurrency")
    @classmethod
    def _ordered(cls, v: tuple[int, int]) -> tuple[int, int]:
        if v[0] < 1 or v[1] < v[0]:
            raise ValueError("concurrency must be [min, max] with 1 <= min <= max")
        return v

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, v: str | None) -> str | None:
        if v is not None and v not in ("float32", "bfloat16", "float16", "fp32", "bf16", "fp16"):
            raise ValueError(f"unknown dtype {v!r}; use float32, bfloat16 or float16")
        return v


@dataclass(frozen=True)
class PoolPlan:
    """Where one job's stages run: its model actor pool and, for the index job, the CPU stages beside it
    (`prep_concurrency` 0 = the job has none)."""

    stage: str  # the config section of the model pool: "embed" or "reranker"
    concurrency: tuple[int, int]
    num_cpus: float
    num_gpus: float
    torch_threads: int | None  # on CPU the actors do the heavy compute: their torch threads share the cores
    cpus_left: float  # for reading, prep and the driver
    prep_concurrency: int = 0
    prep_num_cpus: float = 0.0
    read_num_cpus: float = 0.0

    def describe(self) -> str:
        text = (f"{self.stage} actors {self.concurrency} x ({self.num_cpus} CPU, {self.num_gpus} GPU"
                f"{f', {self.torch_threads} torch threads' if self.torch_threads else ''})")
        if self.prep_concurrency:
            text += (f"; prep actors {self.prep_concurrency} x {self.prep_num_cpus} CPU; "
                     f"read tasks {self.read_num_cpus} CPU")
        return text


def plan_pools(section: str, pool: ModelActorPoolConfig, resources: dict[str, float],
               cpu_stages: bool = False) -> PoolPlan:
    """Fit `pool` into `ray.available_resources()`, keeping at least one CPU (a quarter on big nodes)
    for the other stages; `cpu_stages` also sizes the prep actors and read tasks in what is left.
    `section` names the config section in errors."""
    cpus = float(resources.get("CPU", 1.0))
    gpus = float(resources.get("GPU", 0.0))
    lo, hi = pool.concurrency
    if pool.num_gpus > 0:
        fit = int(gpus // pool.num_gpus) if gpus else 0
        if fit < 1:
            raise ConfigError(f"{section}.num_gpus={pool.num_gpus} but the cluster has {gpus:g} GPUs")
        hi = min(hi, fit)
    spare = max(1.0, cpus * 0.25) if cpus >= 2 else cpus * 0.5
    actor_cpus = min(pool.num_cpus, max(0.5, cpus - spare))
    hi = max(1, min(hi, int((cpus - spare) // actor_cpus) if cpus - spare >= actor_cpus else 1))
    threads = None if pool.num_gpus > 0 else (pool.torch_threads or max(1, math.floor(cpus / hi)))
    left = max(0.5, cpus - hi * actor_cpus)
    plan = PoolPlan(section, (min(lo, hi), hi), actor_cpus, pool.num_gpus, threads, left)
    if not cpu_stages:
        return plan
    prep_actors = max(1, min(int(left // 1), 16))
    return dataclasses.replace(plan, prep_concurrency=prep_actors, prep_num_cpus=min(0.5, left / prep_actors),
                               read_num_cpus=min(0.25, left / 4))
