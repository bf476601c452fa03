"""Embed queries in a Ray actor that holds the resources it asks for (a GPU on a cluster), because the
driver may run where there is none (the KubeRay head). Used for the index job's golden queries and
for the rerank job's retrieval. Like the actor pools it first waits, within a configured bound, for
the cluster to place it, and every call has a timeout: nothing here blocks forever."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

# One call embeds at most a few hundred short queries; far beyond this the actor is hung (a lost
# node, a stuck device), and the run fails as an internal error, which schedulers retry.
CALL_TIMEOUT_S = 600.0
_RELEASE_WAIT_S = 10.0


class _QueryEmbedderActor:
    """The actor's body: loads the embedder in `load` (so a bad checkpoint comes back as the loader's
    own exception, not as a dead actor) and embeds queries."""

    def load(self, embedder_kwargs: dict[str, Any]) -> dict[str, Any]:
        from qbatch.pipeline.embedder import Embedder

        self.embedder = Embedder.from_pretrained(**embedder_kwargs)
        return dict(self.embedder.model_fingerprint)

    def embed_queries(self, texts: list[str], instruction: str | None) -> "np.ndarray":
        return self.embedder.embed_queries(texts, instruction=instruction)


class RemoteQueryEmbedder:
    """`embed_queries` like qbatch.pipeline.Embedder, run in one Ray actor; `close()` gives its resources back."""

    def __init__(self, actor: Any, model_fingerprint: dict[str, Any], call_timeout_s: float,
                 resources: dict[str, float]):
        self._actor = actor
        self._resources = resources
        self.model_fingerprint = model_fingerprint
        self.dim = model_fingerprint["dim"]
        self._timeout = call_timeout_s

    @classmethod
    def start(cls, embedder_kwargs: dict[str, Any], num_gpus: float, wait_field: str, wait_s: float,
              num_cpus: float = 1.0, call_timeout_s: float = CALL_TIMEOUT_S) -> "RemoteQueryEmbedder":
        """Wait up to `wait_s` (named `wait_field` in errors) for the resources, then load the model."""
        import ray

        from qbatch.jobs.runtime.resource_wait import wait_for_resources

        resources = {k: float(v) for k, v in (("CPU", num_cpus), ("GPU", num_gpus)) if v}
        wait_for_resources(wait_field, resources, 1, wait_s, what="query embedder")
        actor = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus or 0)(_QueryEmbedderActor).remote()
        try:
            # The probe just held these resources; loading the model is the rest of the bound.
            fingerprint = ray.get(actor.load.remote(embedder_kwargs), timeout=wait_s + call_timeout_s)
        except BaseException:
            ray.kill(actor)
            raise
        return cls(actor, fingerprint, call_timeout_s, resources)

    def embed_queries(self, texts: Sequence[str], instruction: str | None = None) -> "np.ndarray":
        import ray

        return ray.get(self._actor.embed_queries.remote(list(texts), instruction), timeout=self._timeout)

    def close(self) -> None:
        """Kill the actor, then wait (a few seconds at most) until Ray's resource view shows its CPU and
        GPU free again, so the pool planned next sees them."""
        if self._actor is None:
            return
        import ray

        before = ray.available_resources()
        ray.kill(self._actor, no_restart=True)
        self._actor = None
        deadline = time.monotonic() + _RELEASE_WAIT_S
        while time.monotonic() < deadline:
            now = ray.available_resources()
            if all(now.get(k, 0.0) >= before.get(k, 0.0) + v for k, v in self._resources.items()):
                return
            time.sleep(0.1)

    def __enter__(self) -> "RemoteQueryEmbedder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
