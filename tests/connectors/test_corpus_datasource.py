"""CorpusDatasource: one read task per file, streamed through Ray Data with the raw-record schema."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from qbatch.connectors.corpus_datasource import CorpusDatasource, estimated_inmemory_size
from qbatch.common.end_of_file import END_OF_FILE, UnitEnd
from qbatch.connectors.corpus_file_reader import RAW_SCHEMA
from qbatch.connectors.corpus_listing import list_corpus_files
from qbatch.connectors.source_config import ObjectStoreOptions, SourceConfig
from tests.fixtures.moto_s3 import FAKE_ACCESS_KEY, FAKE_SECRET_KEY


def _write_corpus(root) -> None:
    (root / "a.jsonl").write_text("".join(json.dumps({"id": i, "text": f"t{i}"}) + "\n" for i in range(7)) + "{bad\n")
    (root / "b.csv").write_text("id,text\n100,x\n101,y\n")
    pq.write_table(pa.table({"id": [200, 201, 202], "text": ["p", "q", "r"]}), root / "c.parquet", row_group_size=2)


def test_one_read_task_per_file(tmp_path):
    _write_corpus(tmp_path)
    files = list_corpus_files(SourceConfig(uri=str(tmp_path)))
    source = CorpusDatasource(files, batch_rows=3)
    tasks = source.get_read_tasks(parallelism=1)
    assert [t.metadata.input_files for t in tasks] == [(f.uri,) for f in files]
    assert all(t.schema.equals(RAW_SCHEMA) for t in tasks)
    assert source.estimate_inmemory_data_size() == sum(estimated_inmemory_size(f) for f in files) > 0
    blocks = [b for t in tasks for b in t()]
    # Each file's records, then its end-of-unit marker carrying the record count and the file's unit count.
    assert [b.num_rows for b in blocks] == [3, 3, 2, 1, 2, 1, 3, 1]
    markers = [b.to_pylist()[0] for b in blocks if b.column("_read_error")[0].as_py() == END_OF_FILE]
    assert [(m["_file"], m["_line"]) for m in markers] == [(f.uri, n) for f, n in zip(files, (8, 2, 3))]
    assert [UnitEnd.from_json(m["_record"]) for m in markers] == [UnitEnd(0, 8, 1), UnitEnd(0, 2, 1), UnitEnd(0, 3, 1)]


def test_units_cut_files_and_count_what_travels_on(tmp_path):
    """Units of 3 records: a marker after each, with the rows the plan lets through; done units are skipped."""
    _write_corpus(tmp_path)
    files = list_corpus_files(SourceConfig(uri=str(tmp_path)))
    plan = tmp_path / "plan.parquet"
    pq.write_table(pa.table({"line": pa.array([2, 5, 6, 8], pa.int64())}), plan)
    dups = tmp_path / "dups.parquet"
    pq.write_table(pa.table({"line": pa.array([6], pa.int64())}), dups)

    def read(**kwargs):
        source = CorpusDatasource(files[:1], batch_rows=2, unit_rows=3, **kwargs)
        return [r for t in source.get_read_tasks(1) for b in t() for r in b.to_pylist()]

    rows = read()
    ends = [UnitEnd.from_json(r["_record"]) for r in rows if r["_read_error"] == END_OF_FILE]
    assert ends == [UnitEnd(0, 3), UnitEnd(1, 3), UnitEnd(2, 2, units=3)]
    assert [r["_line"] for r in rows if r["_read_error"] != END_OF_FILE] == list(range(1, 9))
    rows = read(keep_lines={files[0].uri: str(plan)}, duplicate_lines={files[0].uri: str(dups)},
                skip_units={files[0].uri: {0}})
    assert [(r["_line"], r["_read_error"]) for r in rows if r["_read_error"] != END_OF_FILE] == [
        (5, None), (6, "duplicate_id"), (8, "broken_json")]
    assert [UnitEnd.from_json(r["_record"]) for r in rows if r["_read_error"] == END_OF_FILE] == [
        UnitEnd(1, 2), UnitEnd(2, 1, units=3)]


def test_keep_lines_limits_a_file_to_planned_records(tmp_path):
    _write_corpus(tmp_path)
    files = list_corpus_files(SourceConfig(uri=str(tmp_path)))
    plan = tmp_path / "plan.parquet"
    pq.write_table(pa.table({"line": pa.array([2, 5, 8], pa.int64())}), plan)
    source = CorpusDatasource(files, batch_rows=3, keep_lines={files[0].uri: str(plan)})
    rows = [r for t in source.get_read_tasks(1) for b in t() for r in b.to_pylist()]
    first = [(r["_line"], r["_read_error"]) for r in rows if r["_file"] == files[0].uri]
    assert first == [(2, None), (5, None), (8, "broken_json"), (8, END_OF_FILE)]
    assert UnitEnd.from_json(rows[3]["_record"]) == UnitEnd(0, 3, 1)  # the marker counts what travels on
    assert sum(r["_file"] == files[2].uri and r["_read_error"] is None for r in rows) == 3  # unplanned: whole file


def test_read_datasource_streams_every_record(ray_session, tmp_path):
    import ray

    _write_corpus(tmp_path)
    files = list_corpus_files(SourceConfig(uri=str(tmp_path)))
    ds = ray.data.read_datasource(CorpusDatasource(files, batch_rows=4))
    rows = [r for r in ds.take_all() if r["_read_error"] != END_OF_FILE]
    seen = sorted((r["_file"].rsplit("/", 1)[-1], r["_line"], r["_read_error"]) for r in rows)
    expected = sorted([("a.jsonl", i + 1, None) for i in range(7)] + [("a.jsonl", 8, "broken_json")]
                      + [("b.csv", 1, None), ("b.csv", 2, None)] + [("c.parquet", i, None) for i in (1, 2, 3)])
    assert seen == expected
    assert set(ds.schema().names) == set(RAW_SCHEMA.names)


def test_read_datasource_from_s3_with_explicit_keys(ray_session, s3_client, s3_bucket, moto_s3_endpoint):
    import ray

    s3_client.put_object(Bucket=s3_bucket, Key="c/a.jsonl", Body=b'{"id": 1}\n{"id": 2}\n')
    # Explicit keys, because Ray workers do not see environment variables set after ray.init.
    storage = ObjectStoreOptions(endpoint_url=moto_s3_endpoint, access_key_id=FAKE_ACCESS_KEY,
                                 secret_access_key=FAKE_SECRET_KEY)
    files = list_corpus_files(SourceConfig(uri=f"s3://{s3_bucket}/c", storage=storage))
    rows = [r for r in ray.data.read_datasource(CorpusDatasource(files, storage)).take_all()
            if r["_read_error"] != END_OF_FILE]
    assert sorted(json.loads(r["_record"])["id"] for r in rows) == [1, 2]


def test_a_parquet_reader_never_reads_row_groups_of_finished_units(tmp_path, monkeypatch):
    """Units of 4 records over row groups of 4: units 0 and 1 done, so row groups 0 and 1 are not read."""
    pq.write_table(pa.table({"id": list(range(12)), "text": [f"t{i}" for i in range(12)]}), tmp_path / "big.parquet",
                   row_group_size=4)
    files = list_corpus_files(SourceConfig(uri=str(tmp_path)))
    read_groups = []
    real_iter = pq.ParquetFile.iter_batches

    def spy(self, *args, row_groups=None, **kwargs):
        read_groups.extend(row_groups or [])
        return real_iter(self, *args, row_groups=row_groups, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    source = CorpusDatasource(files, batch_rows=3, unit_rows=4, skip_units={files[0].uri: {0, 1}})
    rows = [r for t in source.get_read_tasks(1) for b in t() for r in b.to_pylist()]
    assert read_groups == [2]
    assert [r["_line"] for r in rows if r["_read_error"] != END_OF_FILE] == [9, 10, 11, 12]
    assert [UnitEnd.from_json(r["_record"]) for r in rows if r["_read_error"] == END_OF_FILE] == [UnitEnd(2, 4, 3)]
