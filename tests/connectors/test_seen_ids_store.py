from __future__ import annotations

import os

from hypothesis import given, settings, strategies as st

from connectors.seen_ids_store import SeenIdsStore


def test_first_position_owns_the_id_and_its_chunks(tmp_path):
    with SeenIdsStore(str(tmp_path)) as store:
        assert store.claim([("a", "f1", 1), ("a", "f1", 1), ("b", "f1", 2)]) == [True, True, True]
        assert store.claim([("a", "f2", 9), ("b", "f1", 2), ("c", "f2", 3)]) == [False, True, True]
        path = store.path
    assert not os.path.exists(path)


@settings(deadline=None, max_examples=40)
@given(st.lists(st.tuples(st.sampled_from("abcdef"), st.sampled_from(["f1", "f2"]), st.integers(1, 4)),
                max_size=60), st.integers(1, 7))
def test_matches_an_in_memory_reference_across_batches(rows, batch):
    expected, owner = [], {}
    for doc_id, f, line in rows:
        owner.setdefault(doc_id, (f, line))
        expected.append(owner[doc_id] == (f, line))
    got = []
    with SeenIdsStore() as store:
        for i in range(0, len(rows), batch):
            got.extend(store.claim(rows[i:i + batch]))
    assert got == expected
