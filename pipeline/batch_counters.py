"""Additive counters of the work the model wrappers did; merged across actors at the end of a job."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass
class BatchCounters:
    """Token and batch counts; every field is a sum, so two counters merge by addition."""

    real_tokens: int = 0  # tokens the inputs needed
    computed_tokens: int = 0  # tokens the model ran, padding included
    truncated: int = 0  # inputs cut to max_length
    micro_batches: int = 0  # forward passes
    reused_tokens: int = 0  # shared reranker prefix tokens not recomputed per candidate

    @property
    def padding_efficiency(self) -> float:
        """Share of computed tokens that were real; 1.0 before any work."""
        return self.real_tokens / self.computed_tokens if self.computed_tokens else 1.0

    def add(self, other: "BatchCounters") -> None:
        """Fold `other` into this counter in place."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def __add__(self, other: "BatchCounters") -> "BatchCounters":
        merged = BatchCounters(**asdict(self))
        merged.add(other)
        return merged

    def as_dict(self) -> dict[str, float]:
        out: dict[str, float] = dict(asdict(self))
        out["padding_efficiency"] = self.padding_efficiency
        return out
