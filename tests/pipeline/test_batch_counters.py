from __future__ import annotations

from qbatch.pipeline.batch_counters import BatchCounters


def test_padding_efficiency_is_real_over_computed():
    assert BatchCounters().padding_efficiency == 1.0
    c = BatchCounters(real_tokens=90, computed_tokens=120)
    assert c.padding_efficiency == 0.75
    assert c.as_dict()["padding_efficiency"] == 0.75


def test_counters_merge_by_addition():
    a = BatchCounters(real_tokens=1, computed_tokens=2, truncated=3, micro_batches=4, reused_tokens=5)
    b = BatchCounters(real_tokens=10, computed_tokens=20, truncated=30, micro_batches=40, reused_tokens=50)
    merged = a + b
    assert merged.as_dict() == {"real_tokens": 11, "computed_tokens": 22, "truncated": 33, "micro_batches": 44,
                                "reused_tokens": 55, "padding_efficiency": 0.5}
    assert a.real_tokens == 1  # `+` does not mutate
    a.add(b)
    assert a == merged
