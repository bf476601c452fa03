"""One way to reach files on local disk, S3 or GCS: pyarrow filesystems built from a URI plus
ObjectStoreOptions. Credentials come from options, a named profile or the environment and are
never logged."""

from __future__ import annotations

import configparser
import os
from pathlib import Path

import pyarrow.fs as pafs

from qbatch.common.errors import SourceError
from qbatch.connectors.source_config import ObjectStoreOptions


def split_uri(uri: str) -> tuple[str, str]:
    """('s3', 'bucket/prefix') for s3://bucket/prefix; ('file', '/abs/path') for paths and file://."""
    if "://" in uri:
        scheme, rest = uri.split("://", 1)
        scheme = scheme.lower()
        if scheme == "file":
            return "file", str(Path(rest).resolve())
        if scheme == "gcs":
            scheme = "gs"
        return scheme, rest.rstrip("/")
    return "file", str(Path(uri).expanduser().resolve())


def _profile_keys(profile: str) -> dict[str, str]:
    cred_file = Path(os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials")).expanduser()
    parser = configparser.ConfigParser()
    parser.read(cred_file)
    if profile not in parser:
        raise SourceError(f"AWS profile {profile!r} not found in {cred_file}")
    section = parser[profile]
    keys = {"access_key": section.get("aws_access_key_id"), "secret_key": section.get("aws_secret_access_key")}
    if section.get("aws_session_token"):
        keys["session_token"] = section["aws_session_token"]
    return {k: v for k, v in keys.items() if v}


def _s3_filesystem(opts: ObjectStoreOptions) -> pafs.S3FileSystem:
    kwargs: dict = {}
    endpoint = opts.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        kwargs["endpoint_override"] = host or scheme
        kwargs["scheme"] = scheme if host else "https"
    kwargs["region"] = opts.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    if opts.anonymous:
        kwargs["anonymous"] = True
    elif opts.access_key_id and opts.secret_access_key:
        kwargs["access_key"] = opts.access_key_id.get_secret_value()
        kwargs["secret_key"] = opts.secret_access_key.get_secret_value()
        if opts.session_token:
            kwargs["session_token"] = opts.session_token.get_secret_value()
    elif opts.profile:
        kwargs.update(_profile_keys(opts.profile))
    # else: pyarrow reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / instance credentials itself.
    return pafs.S3FileSystem(**kwargs)


def filesystem_for(uri: str, storage: ObjectStoreOptions | None = None) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and the path inside it for a URI."""
    scheme, path = split_uri(uri)
    opts = storage or ObjectStoreOptions()
    if scheme == "file":
        return pafs.LocalFileSystem(), path
    if scheme == "s3":
        return _s3_filesystem(opts), path
    if scheme == "gs":
        return pafs.GcsFileSystem(anonymous=opts.anonymous), path
    raise SourceError(f"unsupported URI scheme {scheme!r} in {uri}")


def join_uri(base: str, *parts: str) -> str:
    """base/part/part with exactly one slash between pieces."""
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def write_bytes(uri: str, data: bytes, storage: ObjectStoreOptions | None = None) -> None:
    """Write a whole object; on local disk through a temp file + rename, so readers never see half."""
    fs, path = filesystem_for(uri, storage)
    parent = path.rsplit("/", 1)[0]
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(parent, recursive=True)
        tmp = f"{path}.tmp-{os.getpid()}"
        with fs.open_output_stream(tmp) as out:
            out.write(data)
        os.replace(tmp, path)
        return
    with fs.open_output_stream(path) as out:  # object stores publish a PUT atomically
        out.write(data)


def read_bytes(uri: str, storage: ObjectStoreOptions | None = None) -> bytes | None:
    """The object's bytes, or None when it does not exist."""
    fs, path = filesystem_for(uri, storage)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    with fs.open_input_stream(path) as f:
        return f.read()


_SECRET_ENV_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN")


def scrub_secrets(message: str, storage: ObjectStoreOptions | None = None) -> str:
    """The message with every configured or environment credential replaced by '***'.

    Storage libraries sometimes echo request headers or signed URLs in their errors; an operator
    report must never carry them."""
    secrets = [os.environ.get(name) for name in _SECRET_ENV_VARS]
    if storage is not None:
        for field in (storage.access_key_id, storage.secret_access_key, storage.session_token):
            secrets.append(field.get_secret_value() if field is not None else None)
    # Longest first, so a key that contains another key is replaced whole.
    for secret in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        message = message.replace(secret, "***")
    return message


def storage_error(action: str, uri: str, exc: BaseException, storage: ObjectStoreOptions | None = None) -> SourceError:
    """A SourceError for a failed `action` on `uri`, with a hint, and no credentials in it."""
    detail = scrub_secrets(f"{type(exc).__name__}: {exc}", storage)
    hint = ""
    lowered = detail.lower()
    if "nosuchbucket" in lowered or "bucket does not exist" in lowered or "no such bucket" in lowered:
        hint = " (the bucket does not exist; check the URI)"
    elif "access denied" in lowered or "accessdenied" in lowered or "forbidden" in lowered or "permission" in lowered:
        hint = " (access denied; check the credentials' permissions for this bucket/prefix)"
    return SourceError(f"cannot {action} {uri}{hint}: {detail}")


def table_to_parquet(table) -> bytes:
    """A whole Parquet file in memory, so write_bytes can publish it atomically (local disk and S3)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()
