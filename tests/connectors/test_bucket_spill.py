from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings, strategies as st

from qbatch.connectors.bucket_spill import BucketSpill
from qbatch.connectors.manifest_store import bucket_of

SCHEMA = pa.schema([("doc_id", pa.string()), ("line", pa.int64())])


@settings(deadline=None, max_examples=25)
@given(st.lists(st.text(min_size=1, max_size=6), max_size=80), st.integers(1, 9), st.integers(1, 20))
def test_every_row_comes_back_once_in_its_bucket(ids, n_buckets, batch):
    with BucketSpill(SCHEMA, n_buckets) as spill:
        for start in range(0, len(ids), batch):
            part = ids[start:start + batch]
            spill.add(pa.table({"doc_id": part, "line": list(range(start, start + len(part)))}, schema=SCHEMA))
        got = []
        for i in range(n_buckets):
            rows = spill.read(i).to_pylist()
            assert all(bucket_of(r["doc_id"], n_buckets) == i for r in rows)
            got.extend((r["doc_id"], r["line"]) for r in rows)
    assert sorted(got) == sorted(zip(ids, range(len(ids))))
