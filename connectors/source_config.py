"""Where a job reads rows from: a URI, a format and object-store options. Shared by the index and
rerank jobs, so it names no job-specific columns."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

SUPPORTED_SCHEMES = ("", "file", "s3", "gs", "gcs")


class ObjectStoreOptions(BaseModel):
    """S3/GCS connection settings. Credentials default to the standard environment variables
    (AWS_ACCESS_KEY_ID, ...) or a named profile; they never appear in logs or reports."""

    model_config = ConfigDict(extra="forbid")

    endpoint_url: str | None = Field(None, description="S3-compatible endpoint, e.g. http://127.0.0.1:9000 (MinIO, moto)")
    region: str | None = Field(None, description="S3 region; default from AWS_REGION / AWS_DEFAULT_REGION or us-east-1")
    profile: str | None = Field(None, description="named profile in ~/.aws/credentials to take keys from")
    access_key_id: SecretStr | None = Field(None, description="S3 access key; prefer the environment or a profile")
    secret_access_key: SecretStr | None = Field(None, description="S3 secret key; prefer the environment or a profile")
    session_token: SecretStr | None = Field(None, description="S3 session token for temporary credentials")
    anonymous: bool = Field(False, description="read a public bucket without credentials")


class SourceConfig(BaseModel):
    """A dataset of files: local path, file://, s3://bucket/prefix or gs://bucket/prefix."""

    model_config = ConfigDict(extra="forbid")

    uri: str = Field(..., description="file or folder: /path, file:///path, s3://bucket/prefix, gs://bucket/prefix")
    format: Literal["auto", "parquet", "jsonl", "csv"] = Field(
        "auto", description="file format; auto picks it from each file's extension")
    glob: str | None = Field(None, description="only files whose path below the URI matches, e.g. 'dt=2026-11-*/*.parquet'")
    storage: ObjectStoreOptions = Field(default_factory=ObjectStoreOptions, description="object-store settings")

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("must not be empty")
        scheme = v.split("://", 1)[0].lower() if "://" in v else ""
        if scheme not in SUPPORTED_SCHEMES:
            raise ValueError(f"unsupported scheme {scheme!r}; use a local path, file://, s3:// or gs://")
        return v
