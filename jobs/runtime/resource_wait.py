"""Wait until the Ray cluster can place a number of actors, and ask its autoscaler for them meanwhile.

The probe is a placement group of the actors' bundles. A pending placement group is demand that Ray's
autoscaler acts on (KubeRay adds GPU workers for it), so the wait also brings the nodes; polling
`ray.cluster_resources()` alone would ask for nothing. Placement is all-or-nothing, so "ready" means
the cluster held every bundle at once. The probe is removed before the real actors start; they then
find the nodes it brought (the autoscaler keeps idle nodes for minutes, see infra/kuberay)."""

from __future__ import annotations

import logging
import math
import time

from qbatch.common.errors import ResourcesUnavailableError

log = logging.getLogger("qbatch.ray")
_POLL_S = 30.0  # how often a long wait logs what is still missing


def wait_for_resources(field: str, bundle: dict[str, float], count: int, wait_s: float, what: str,
                       poll_s: float = _POLL_S) -> float:
    """Block until the cluster can place `count` x `bundle`, at most `wait_s` seconds; returns the
    seconds waited. Raises ResourcesUnavailableError naming `field` (the wait's config field)."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    bundle = {k: float(v) for k, v in bundle.items() if v > 0}
    if count < 1 or not bundle:
        return 0.0
    started = time.monotonic()
    deadline = started + wait_s
    pg = placement_group([bundle] * count, strategy="PACK")
    try:
        while True:
            left = deadline - time.monotonic()
            # wait_placement_group_ready takes whole seconds; 0 only checks.
            if pg.wait(timeout_seconds=max(0, math.ceil(min(poll_s, left)))):
                waited = time.monotonic() - started
                if waited >= 1.0:
                    log.info("%s: the cluster can place %d x %s after %.0fs", what, count, bundle, waited)
                return waited
            if time.monotonic() >= deadline:
                break
            log.info("%s: waiting, %s (up to %s=%gs)", what, _shortfall(bundle, count), field, wait_s)
    finally:
        remove_placement_group(pg)
    raise ResourcesUnavailableError(
        f"{what}: the cluster could not place {count} x {bundle} within {field}={wait_s:g}s; "
        f"{_shortfall(bundle, count)}. Add nodes with these resources (or let the autoscaler add them), "
        f"lower the actors' needs, or raise {field}")


def _shortfall(bundle: dict[str, float], count: int) -> str:
    """What is missing, against the cluster's totals now (not what happens to be free)."""
    import ray

    total = ray.cluster_resources()
    free = ray.available_resources()
    missing = [f"{k} {total.get(k, 0.0):g} of the {v * count:g} needed" for k, v in bundle.items()
               if total.get(k, 0.0) < v * count]
    if missing:
        return "the cluster has " + ", ".join(missing)
    busy = ", ".join(f"{k} {free.get(k, 0.0):g} free of {total.get(k, 0.0):g}" for k in bundle)
    return f"the cluster has enough in total but not free at once, or not on one node per bundle ({busy})"
