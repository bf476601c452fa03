"""How to reach Qdrant and how to shape a collection. Job-neutral: the index job writes with it and
the rerank job reads with it. Embedded local mode (`path`) is the default so a laptop needs no server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

PayloadIndexKind = Literal["keyword", "integer", "float", "bool", "datetime", "text", "uuid"]

# Qdrant rejects these in collection (and alias) names.
FORBIDDEN_NAME_CHARS = set('<>:"/\\|?*\0\x1f')


def check_collection_name(name: str) -> str:
    bad = "".join(sorted({c for c in name if c in FORBIDDEN_NAME_CHARS}))
    if not name or len(name) > 255 or bad:
        shown = repr(bad) if bad else "none"
        raise ValueError(f"{name!r} is not a valid Qdrant collection name: 1-255 characters, none of "
                         f"< > : \" / \\ | ? * (found: {shown})")
    return name


class QdrantConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, description="Qdrant server URL, e.g. http://qdrant:6333; unset = embedded local mode at `path`")
    path: str | None = Field(None, description="embedded local-mode storage folder (default ./qdrant-data when url is unset)")
    api_key: SecretStr | None = Field(None, description="API key; prefer api_key_env or api_key_file")
    api_key_env: str = Field("QDRANT_API_KEY", description="environment variable holding the API key")
    api_key_file: str | None = Field(None, description="file holding the API key (e.g. a mounted Kubernetes secret)")
    prefer_grpc: bool = Field(False, description="use gRPC for data transfer (server mode)")
    grpc_port: int = Field(6334, ge=1, le=65535, description="the server's gRPC port, used with prefer_grpc")
    timeout_s: float = Field(30.0, gt=0, description="request timeout in seconds")
    collection: str = Field("qbatch", description="collection (or alias) name")
    distance: Literal["cosine", "dot", "euclid"] = Field("cosine", description="vector distance")
    on_disk: bool = Field(False, description="keep vectors on disk (memmap) instead of RAM")
    quantization: Literal["none", "scalar_int8", "binary"] = Field("none", description="vector quantization")
    hnsw_m: int = Field(16, ge=0, description="HNSW graph degree")
    hnsw_ef_construct: int = Field(100, ge=4, description="HNSW build-time search width")
    shard_number: int = Field(1, ge=1, description="shards (server mode); a multiple of the node count")
    replication_factor: int = Field(1, ge=1, description="replicas per shard (server mode)")
    write_consistency_factor: int = Field(1, ge=1, description="replicas that must ack a write (server mode)")
    payload_indexes: dict[str, PayloadIndexKind] = Field(
        default_factory=dict, description="payload field -> index type, created before loading, e.g. {lang = 'keyword'}")
    store_text: bool = Field(True, description="store the chunk text in the payload (search snippets and rerank read it)")
    upsert_batch_size: int = Field(256, ge=1, le=10_000, description="points per upsert request")
    parallel_writers: int = Field(1, ge=1, description="concurrent upsert writers (server mode only)")
    max_retries: int = Field(6, ge=1, description="tries per request on transient errors before giving up")

    @field_validator("collection")
    @classmethod
    def _valid_name(cls, v: str) -> str:
        return check_collection_name(v)

    @model_validator(mode="after")
    def _one_target(self) -> "QdrantConfig":
        if self.url and self.path:
            raise ValueError("set either qdrant.url (server) or qdrant.path (embedded local mode), not both")
        if self.url is None and self.path is None:
            self.path = "./qdrant-data"
        if self.path is not None and self.parallel_writers > 1:
            raise ValueError("qdrant.parallel_writers > 1 needs a server (qdrant.url): "
                             "local mode allows one writer per path")
        return self

    @property
    def is_local(self) -> bool:
        return self.url is None

    def resolve_api_key(self) -> str | None:
        """The API key from the config, the key file or the environment, in that order."""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        if self.api_key_file:
            p = Path(self.api_key_file)
            if not p.is_file():
                raise ValueError(f"qdrant.api_key_file {p} does not exist")
            return p.read_text(encoding="utf-8").strip() or None
        return os.environ.get(self.api_key_env) or None
