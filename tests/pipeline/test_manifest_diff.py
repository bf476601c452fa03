from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings, strategies as st

from qbatch.pipeline.manifest_diff import DiffSummary, diff_bucket, gate_projection


def _manifest(rows: dict[str, tuple[str, str, int]]) -> pa.Table:
    ids = sorted(rows)
    return pa.table({"doc_id": pa.array(ids, pa.string()),
                     "content_hash": pa.array([rows[i][0] for i in ids], pa.string()),
                     "payload_hash": pa.array([rows[i][1] for i in ids], pa.string()),
                     "n_chunks": pa.array([rows[i][2] for i in ids], pa.int32())})


def _ids(table: pa.Table) -> list[str]:
    return table.column("doc_id").to_pylist()


def test_each_kind_of_change_is_classified():
    old = _manifest({"same": ("c1", "p1", 2), "moved": ("c2", "p2", 5), "retag": ("c3", "p3", 1),
                     "gone": ("c4", "p4", 3)})
    new = _manifest({"same": ("c1", "p1", 2), "moved": ("c2x", "p2", 3), "retag": ("c3", "p3x", 1),
                     "fresh": ("c5", "p5", 4)})
    diff = diff_bucket(old, new)
    assert (_ids(diff.new_docs), _ids(diff.changed), _ids(diff.payload_only), _ids(diff.deleted),
            _ids(diff.unchanged)) == (["fresh"], ["moved"], ["retag"], ["gone"], ["same"])
    assert diff.changed.to_pylist() == [{"doc_id": "moved", "content_hash": "c2x", "payload_hash": "p2",
                                         "n_chunks": 3, "old_n_chunks": 5}]
    assert diff.deleted.column("n_chunks").to_pylist() == [3]
    assert diff.payload_only.column("payload_hash").to_pylist() == ["p3x"]
    # embed fresh (4) + moved (3); delete gone (3) + the 2 chunks moved lost (5 -> 3).
    assert diff.summary() == DiffSummary(new_docs=1, changed=1, payload_only=1, deleted=1, unchanged=1,
                                         points_to_embed=7, points_to_delete=5)


def test_no_old_bucket_means_everything_is_new():
    diff = diff_bucket(None, _manifest({"b": ("c", "p", 2), "a": ("c", "p", 1)}))
    assert _ids(diff.new_docs) == ["a", "b"]
    assert diff.summary().as_dict() == {"new_docs": 2, "changed": 0, "payload_only": 0, "deleted": 0,
                                        "unchanged": 0, "points_to_embed": 3, "points_to_delete": 0}


def test_repeated_doc_id_is_refused():
    dup = pa.concat_tables([_manifest({"a": ("c", "p", 1)})] * 2)
    with pytest.raises(ValueError, match="old manifest bucket repeats"):
        diff_bucket(dup, _manifest({}))


def test_summaries_add_up():
    a = DiffSummary(new_docs=1, changed=2, deleted=3, points_to_embed=4)
    b = DiffSummary(new_docs=10, unchanged=5, points_to_delete=6)
    total = a + b
    assert total == DiffSummary(new_docs=11, changed=2, deleted=3, unchanged=5, points_to_embed=4,
                                points_to_delete=6)
    assert (total.old_docs, total.new_total) == (10, 18)
    assert sum([a, b], DiffSummary()) == total


def test_gate_projection_hand_checked():
    summary = DiffSummary(new_docs=5, deleted=30, unchanged=70)
    # 30/100 deleted > 20%; projected 100 - 30 + 5 = 75 < 0.8 * 100.
    failures = gate_projection(summary, live_docs=100, max_delete_ratio=0.2, min_ratio=0.8)
    assert len(failures) == 2
    assert "30 of 100" in failures[0] and "30.0%" in failures[0]
    assert "75 documents from 100" in failures[1]
    assert gate_projection(summary, live_docs=100, max_delete_ratio=0.3, min_ratio=0.75) == []
    assert gate_projection(summary, live_docs=0, max_delete_ratio=0.0, min_ratio=1.0) == []
    assert gate_projection(summary, live_docs=None, max_delete_ratio=0.0, min_ratio=1.0) == []


_docs = st.dictionaries(st.text(min_size=1, max_size=6),
                        st.tuples(st.sampled_from(["c1", "c2"]), st.sampled_from(["p1", "p2"]), st.integers(1, 4)),
                        max_size=25)


@settings(deadline=None, max_examples=80)
@given(old=_docs, new=_docs, old_missing=st.booleans())
def test_applying_the_diff_to_old_yields_new(old, new, old_missing):
    old_table = None if old_missing else _manifest(old)
    old = {} if old_missing else old
    diff = diff_bucket(old_table, _manifest(new))
    state = dict(old)
    for row in diff.deleted.to_pylist():
        assert state.pop(row["doc_id"])[2] == row["n_chunks"]
    for row in diff.changed.to_pylist():
        assert state[row["doc_id"]][2] == row["old_n_chunks"]
    for kind in (diff.new_docs, diff.changed, diff.payload_only):
        for row in kind.to_pylist():
            state[row["doc_id"]] = (row["content_hash"], row["payload_hash"], row["n_chunks"])
    for doc_id in _ids(diff.unchanged):
        assert state[doc_id] == new[doc_id]
    assert state == new
    summary = diff.summary()
    assert (summary.old_docs, summary.new_total) == (len(old), len(new))
    assert summary.points_to_embed == sum(new[d][2] for d in _ids(diff.new_docs) + _ids(diff.changed))


def test_points_to_delete_covers_deleted_docs_and_lost_chunks():
    import pyarrow as pa

    from qbatch.pipeline.manifest_diff import diff_bucket, points_to_delete

    def m(rows):
        return pa.table({"doc_id": [r[0] for r in rows], "content_hash": [r[1] for r in rows],
                         "payload_hash": ["p"] * len(rows), "n_chunks": pa.array([r[2] for r in rows], pa.int32())})

    old = m([("a", "h1", 3), ("b", "h2", 2), ("c", "h3", 1)])
    new = m([("a", "h1x", 1), ("c", "h3", 1), ("d", "h4", 2)])
    assert sorted(points_to_delete(diff_bucket(old, new))) == [("a", 1), ("a", 2), ("b", 0), ("b", 1)]
