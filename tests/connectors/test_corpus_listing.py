"""list_corpus_files: sorted listings, globs, skipped files, formats and clear errors."""

from __future__ import annotations

import pytest

from qbatch.common.errors import SourceError
from qbatch.connectors.corpus_listing import compression_from_name, format_from_name, glob_to_regex, list_corpus_files
from qbatch.connectors.source_config import SourceConfig


def _touch(root, rel: str, data: bytes = b"x\n") -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture()
def corpus(tmp_path):
    for rel in ["dt=2026-11-02/b.parquet", "dt=2026-11-01/a.parquet", "dt=2026-11-01/c.jsonl.gz",
                "top.csv", "dt=2026-11-01/_SUCCESS", "_temporary/0/x.parquet", ".hidden.jsonl",
                "dt=2026-11-01/.a.parquet.crc", "README.md", "notes.ndjson"]:
        _touch(tmp_path, rel)
    _touch(tmp_path, "empty.jsonl", b"")
    return tmp_path


def test_lists_data_files_sorted_with_formats(corpus):
    files = list_corpus_files(SourceConfig(uri=str(corpus)))
    assert [(f.path, f.format) for f in files] == [
        ("dt=2026-11-01/a.parquet", "parquet"),
        ("dt=2026-11-01/c.jsonl.gz", "jsonl"),
        ("dt=2026-11-02/b.parquet", "parquet"),
        ("notes.ndjson", "jsonl"),
        ("top.csv", "csv"),
    ]
    assert files[0].uri == f"{corpus}/dt=2026-11-01/a.parquet"
    assert all(f.size == 2 for f in files)


def test_glob_is_relative_to_the_uri(corpus):
    files = list_corpus_files(SourceConfig(uri=f"file://{corpus}/", glob="dt=2026-11-0[12]/*.parquet"))
    assert [f.path for f in files] == ["dt=2026-11-01/a.parquet", "dt=2026-11-02/b.parquet"]
    top_only = list_corpus_files(SourceConfig(uri=str(corpus), glob="*.csv"))
    assert [f.path for f in top_only] == ["top.csv"]


@pytest.mark.parametrize("pattern,path,matches", [
    ("**/*.parquet", "a.parquet", True),
    ("**/*.parquet", "x/y/a.parquet", True),
    ("*.parquet", "x/a.parquet", False),
    ("dt=*/a.?arquet", "dt=1/a.parquet", True),
    ("dt=[!2]*/*", "dt=2/a", False),
    ("data/**", "data/x/y.csv", True),
    ("a+b(1).csv", "a+b(1).csv", True),
])
def test_glob_rules(pattern, path, matches):
    assert bool(glob_to_regex(pattern).match(path)) is matches


@pytest.mark.parametrize("name,fmt", [
    ("a.PARQUET", "parquet"), ("a.pq", "parquet"), ("a.json", "jsonl"), ("a.csv.gz", "csv"),
    ("a.ndjson.zst", "jsonl"), ("a.parquet.gz", None), ("a.txt", None),
])
def test_format_from_name(name, fmt):
    assert format_from_name(name) == fmt


def test_compression_from_name():
    names = ["a.jsonl", "a.JSONL.GZ", "b.csv.bz2", "c.ndjson.zst", "d.parquet"]
    assert [compression_from_name(n) for n in names] == [None, "gzip", "bz2", "zstd", None]


def test_explicit_format_reads_unknown_extensions(tmp_path):
    _touch(tmp_path, "part-0000")
    _touch(tmp_path, "part-0001")
    files = list_corpus_files(SourceConfig(uri=str(tmp_path), format="jsonl"))
    assert [(f.path, f.format) for f in files] == [("part-0000", "jsonl"), ("part-0001", "jsonl")]


def test_single_file_uri(corpus):
    files = list_corpus_files(SourceConfig(uri=str(corpus / "top.csv"), glob="*.parquet"))
    assert [(f.path, f.format, f.uri) for f in files] == [("top.csv", "csv", str(corpus / "top.csv"))]


def test_nothing_found_names_uri_and_glob(corpus, tmp_path):
    with pytest.raises(SourceError, match=r"no data files.*glob '\*\.orc'"):
        list_corpus_files(SourceConfig(uri=str(corpus), glob="*.orc"))
    with pytest.raises(SourceError, match="no such file"):
        list_corpus_files(SourceConfig(uri=str(tmp_path / "absent")))


def test_unknown_extensions_only_suggests_format(tmp_path):
    _touch(tmp_path, "data.txt")
    with pytest.raises(SourceError, match="set source.format"):
        list_corpus_files(SourceConfig(uri=str(tmp_path)))


def test_lists_an_s3_prefix(s3_client, s3_bucket, s3_storage):
    for key in ["corpus/p=1/b.jsonl", "corpus/p=1/a.parquet", "corpus/_SUCCESS", "other/z.csv"]:
        s3_client.put_object(Bucket=s3_bucket, Key=key, Body=b"{}\n")
    files = list_corpus_files(SourceConfig(uri=f"s3://{s3_bucket}/corpus", storage=s3_storage))
    assert [(f.uri, f.path, f.format, f.size) for f in files] == [
        (f"s3://{s3_bucket}/corpus/p=1/a.parquet", "p=1/a.parquet", "parquet", 3),
        (f"s3://{s3_bucket}/corpus/p=1/b.jsonl", "p=1/b.jsonl", "jsonl", 3),
    ]
    with pytest.raises(SourceError, match="no object under this prefix"):
        list_corpus_files(SourceConfig(uri=f"s3://{s3_bucket}/nothing-here", storage=s3_storage))
