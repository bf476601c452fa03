"""object_store: URIs, round trips on local disk and on a moto S3 server, and secret-free errors."""

from __future__ import annotations

import pytest

from qbatch.common.errors import SourceError
from qbatch.connectors.corpus_listing import list_corpus_files
from qbatch.connectors.object_store import join_uri, read_bytes, scrub_secrets, split_uri, storage_error, write_bytes
from qbatch.connectors.source_config import ObjectStoreOptions, SourceConfig
from tests.fixtures.moto_s3 import FAKE_ACCESS_KEY, FAKE_SECRET_KEY


def test_split_and_join_uri(tmp_path):
    assert split_uri("s3://bucket/a/b/") == ("s3", "bucket/a/b")
    assert split_uri("gcs://bucket/x") == ("gs", "bucket/x")
    assert split_uri(f"file://{tmp_path}/x") == ("file", str(tmp_path / "x"))
    assert join_uri("s3://b/p/", "/runs/", "r1") == "s3://b/p/runs/r1"


def test_local_round_trip_leaves_no_temp_file(tmp_path):
    uri = str(tmp_path / "deep" / "dir" / "obj.bin")
    write_bytes(uri, b"\x00payload")
    assert read_bytes(uri) == b"\x00payload"
    assert [p.name for p in (tmp_path / "deep" / "dir").iterdir()] == ["obj.bin"]
    assert read_bytes(str(tmp_path / "missing")) is None


def test_s3_round_trip(s3_bucket, s3_storage, s3_client):
    uri = f"s3://{s3_bucket}/state/report.json"
    write_bytes(uri, b'{"ok": true}', s3_storage)
    assert read_bytes(uri, s3_storage) == b'{"ok": true}'
    assert s3_client.get_object(Bucket=s3_bucket, Key="state/report.json")["Body"].read() == b'{"ok": true}'
    assert read_bytes(f"s3://{s3_bucket}/state/absent.json", s3_storage) is None


def test_scrub_secrets_removes_option_and_env_keys(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret-value")
    opts = ObjectStoreOptions(access_key_id="AKIAOPTIONKEY", secret_access_key="opt-secret-value")
    msg = scrub_secrets("sig=opt-secret-value key=AKIAOPTIONKEY env=env-secret-value", opts)
    assert "secret-value" not in msg and "AKIAOPTIONKEY" not in msg
    assert msg.count("***") == 3


def test_storage_error_names_uri_and_hides_keys():
    opts = ObjectStoreOptions(access_key_id="AKIAOPTIONKEY", secret_access_key="opt-secret-value")
    err = storage_error("read", "s3://b/k", OSError("AccessDenied for AKIAOPTIONKEY"), opts)
    assert isinstance(err, SourceError)
    assert "s3://b/k" in str(err) and "access denied" in str(err)
    assert "AKIAOPTIONKEY" not in str(err)


@pytest.mark.parametrize("explicit_keys", [False, True])
def test_missing_bucket_error_has_no_credentials(moto_s3_endpoint, explicit_keys):
    storage = ObjectStoreOptions(endpoint_url=moto_s3_endpoint)
    if explicit_keys:
        storage = ObjectStoreOptions(endpoint_url=moto_s3_endpoint, access_key_id=FAKE_ACCESS_KEY,
                                     secret_access_key=FAKE_SECRET_KEY)
    source = SourceConfig(uri="s3://qbatch-no-such-bucket/corpus", storage=storage)
    with pytest.raises(SourceError) as info:
        list_corpus_files(source)
    message = str(info.value)
    assert "s3://qbatch-no-such-bucket/corpus" in message and "does not exist" in message
    assert FAKE_SECRET_KEY not in message and FAKE_ACCESS_KEY not in message
