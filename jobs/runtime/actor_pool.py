"""What the embedding and reranker actor pools share: their config fields and how they are sized.

A GPU pool asks Ray for `concurrency = [min, max]` exactly as configured and lets the autoscaler bring
the GPU nodes: a resource snapshot taken at start must not cap it (on a cold cluster with an
autoscaled GPU group it would see no GPU at all). A CPU pool is sized from the CPUs present, because
an actor pool that reserves every CPU starves the read and prep stages (on 2 CPUs two 1-CPU actors
stalled a whole job); sizing always leaves CPU for them."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator



class ModelActorPoolConfig(BaseModel):
    """Base of a model section that runs in a Ray actor pool."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(..., description="checkpoint path or hub name")
    dtype: str | None = Field(None, description="float32, bfloat16, float16; none = bf16 on GPU and on CPUs that "
                                               "multiply bf16 natively (AMX, AVX512-BF16), fp32 on other CPUs")
    device: str | None = Field(None, description="cpu, cuda, cuda:1; none = cuda if available")
    max_batch_tokens: int | None = Field(None, ge=16, description="padded tokens per micro-batch; none = per-device default")
    concurrency: tuple[int, int] = Field((1, 1), description="actors as [min, max]")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per actor")
    num_cpus: float = Field(1.0, gt=0, description="CPUs reserved per actor")
    torch_threads: int | None = Field(None, ge=1, description="CPU only: torch threads per actor; none = cores / actors")
    resources_wait_s: float = Field(
        900.0, ge=0, description="before the first row, wait this long for the cluster (and its autoscaler) to "
                                 "place the pool's minimum actors; then exit 8 (resources unavailable, retried)")

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
    writers: int = 0  # Qdrant writer actors after the model pool (index job)
    writer_num_cpus: float = 0.0
    scan_num_cpus: float = 1.0  # per task of the hash-only scan, which runs before the pools start

    def actor_bundle(self) -> dict[str, float]:
        """What one actor of the pool reserves, as a Ray resource bundle."""
        return {"CPU": self.num_cpus, **({"GPU": self.num_gpus} if self.num_gpus else {})}

    def describe(self) -> str:
        text = (f"{self.stage} actors {self.concurrency} x ({self.num_cpus} CPU, {self.num_gpus} GPU"
                f"{f', {self.torch_threads} torch threads' if self.torch_threads else ''})")
        if self.prep_concurrency:
            text += (f"; prep actors {self.prep_concurrency} x {self.prep_num_cpus} CPU; "
                     f"read tasks {self.read_num_cpus} CPU")
        if self.writers:
            text += f"; qdrant writer actors {self.writers} x {self.writer_num_cpus:g} CPU"
        return text


def plan_pools(section: str, pool: ModelActorPoolConfig, resources: dict[str, float],
               cpu_stages: bool = False, writers: int = 0) -> PoolPlan:
    """Size `pool` for a snapshot of `ray.available_resources()`. A GPU pool keeps its configured
    concurrency and CPUs (the snapshot only sizes the CPU stages beside it); a CPU pool fits into the
    CPUs present, keeping at least one (a quarter on big nodes) for the other stages. `cpu_stages`
    also sizes the prep actors and read tasks in what is left, and `writers` Qdrant writer actors with a
    small CPU share each (they mostly wait on Qdrant). `section` names the config section."""
    cpus = float(resources.get("CPU", 1.0))
    if pool.num_gpus > 0:
        # GPU actors that could start on what is here now: only they take CPUs from the other stages.
        here = min(pool.concurrency[1], int(float(resources.get("GPU", 0.0)) // pool.num_gpus))
        plan = PoolPlan(section, pool.concurrency, pool.num_cpus, pool.num_gpus, None,
                        max(0.5, cpus - here * pool.num_cpus))
    else:
        lo, hi = pool.concurrency
        spare = max(1.0, cpus * 0.25) if cpus >= 2 else cpus * 0.5
        actor_cpus = min(pool.num_cpus, max(0.5, cpus - spare))
        hi = max(1, min(hi, int((cpus - spare) // actor_cpus) if cpus - spare >= actor_cpus else 1))
        threads = pool.torch_threads or max(1, math.floor(cpus / hi))
        plan = PoolPlan(section, (min(lo, hi), hi), actor_cpus, 0.0, threads, max(0.5, cpus - hi * actor_cpus))
    if not cpu_stages:
        return plan
    left = plan.cpus_left
    prep_actors = max(1, min(int(left // 1), 16))
    return dataclasses.replace(plan, prep_concurrency=prep_actors, prep_num_cpus=min(0.5, left / prep_actors),
                               read_num_cpus=min(0.25, left / 4), writers=writers,
                               writer_num_cpus=round(min(0.25, left / 4 / writers), 4) if writers else 0.0)


def plan_and_wait(section: str, pool: ModelActorPoolConfig, cpu_stages: bool = False, writers: int = 0) -> PoolPlan:
    """Plan `pool` on the connected Ray cluster, then wait (up to `{section}.resources_wait_s`) until
    the cluster can place its minimum actors; raises ResourcesUnavailableError when it cannot."""
    import ray

    from qbatch.jobs.runtime.resource_wait import wait_for_resources

    plan = plan_pools(section, pool, ray.available_resources(), cpu_stages=cpu_stages, writers=writers)
    wait_for_resources(f"{section}.resources_wait_s", plan.actor_bundle(), plan.concurrency[0], pool.resources_wait_s,
                       what=f"{section} actors")
    return plan
