"""The typed config of `qbatch index`: source, columns, chunking, embed, qdrant, run.
A TOML/YAML file loads into it and `--set section.field=value` overrides it; it is validated in full
before the first row is read."""

from __future__ import annotations

import string
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from qbatch.connectors.qdrant_config import QdrantConfig
from qbatch.connectors.source_config import SourceConfig
from qbatch.jobs.runtime.actor_pool import ModelActorPoolConfig
from qbatch.jobs.runtime.run_fields import JobRunFields


class ColumnsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field("id", description="column holding the document id (normalised to a string)")
    text: str | None = Field("text", description="column holding the text; ignored when text_template is set")
    text_template: str | None = Field(
        None, description="text built from columns, e.g. '{title}\\n{brand}\\n{description}'")
    payload: list[str] = Field(default_factory=list, description="columns copied into the Qdrant payload")
    lang: str | None = Field(None, description="optional column with the document language")

    @model_validator(mode="after")
    def _text_source(self) -> "ColumnsConfig":
        if not self.text_template and not self.text:
            raise ValueError("set columns.text or columns.text_template")
        return self

    def template_fields(self) -> list[str]:
        if not self.text_template:
            return []
        try:
            return [f for _, f, _, _ in string.Formatter().parse(self.text_template) if f]
        except ValueError as e:
            raise ValueError(f"columns.text_template is not a valid template: {e}") from None

    def input_columns(self) -> list[str]:
        """Every column the job reads, in a stable order."""
        cols = [self.id, *(self.template_fields() or [self.text]), *self.payload]
        if self.lang:
            cols.append(self.lang)
        return list(dict.fromkeys(c for c in cols if c))


class ChunkingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="split long documents by tokens; off = truncate at embed.max_length (counted)")
    max_tokens: int = Field(512, ge=16, description="tokens per chunk")
    overlap: int = Field(64, ge=0, description="tokens shared by consecutive chunks")

    @model_validator(mode="after")
    def _overlap_fits(self) -> "ChunkingConfig":
        if self.overlap >= self.max_tokens:
            raise ValueError("chunking.overlap must be smaller than chunking.max_tokens")
        return self


class EmbedConfig(ModelActorPoolConfig):
    """The embedding model and its actor pool (concurrency, num_gpus, num_cpus from the base)."""

    model: str = Field(..., description="checkpoint path or hub name (Qwen3-Embedding or a sentence-transformers encoder)")
    dim: int | None = Field(None, ge=32, description="MRL output dimension (32..hidden); none = hidden size")
    max_length: int = Field(8192, ge=8, description="max tokens per input, end token included")
    doc_instruction: str | None = Field(None, description="instruction for documents; normally none (symmetric tasks set it)")
    query_instruction: str | None = Field(None, description="instruction for queries; none = the default web-search task")
    batch_size: int = Field(1024, ge=1, description="rows handed to an actor per call; more rows give the length "
                                                    "bucketing more to sort")


RESERVED_PAYLOAD_KEYS = frozenset({"doc_id", "chunk", "span", "text", "lang", "content_hash", "payload_hash",
                                   "indexed_at", "run_id"})

class RunConfig(JobRunFields):
    output_uri: str = Field("./qbatch-output", description="root of what runs leave (path or s3://): "
                                                          "{output_uri}/{alias}/runs/{run_id}/ and {output_uri}/{alias}/manifests/")
    legacy_output_uri: str | None = Field(
        None, description="an earlier output_uri that holds this alias's manifests; read when output_uri has none, "
                          "and the live manifest is copied to output_uri before the run")
    mode: Literal["full", "incremental", "append"] = Field(
        "full", description="full: blue/green rebuild behind the alias; incremental: diff against the live "
                            "manifest and update in place; append: upsert new and changed docs, delete nothing")
    keep: int = Field(2, ge=1, description="collections kept per alias (the live one included) after a switch")
    checkpoint_rows: int = Field(
        50_000, ge=1, description="records per checkpoint unit: a crashed run redoes at most the units in flight, "
                                  "each a range of at most this many records of one file")
    block_bytes: int = Field(
        16 << 20, ge=1 << 10, description="Ray Data block size in bytes for this job's datasets: smaller blocks "
                                         "stream to the writers sooner and leave less in flight; larger ones cost "
                                         "the driver less (one acknowledgement batch per block)")
    lock_ttl_s: float = Field(900.0, gt=0, description="the alias lock expires this long after its last refresh; "
                                                       "a background heartbeat refreshes it every third of this")


class GatesConfig(BaseModel):
    """Validation gates: a run that fails one never touches the live alias."""

    model_config = ConfigDict(extra="forbid")

    min_ratio: float = Field(0.9, ge=0.0, le=10.0, description="new/projected docs must be >= this share of the live index")
    max_delete_ratio: float = Field(0.1, ge=0.0, le=1.0, description="incremental: deletions may be at most this share of live docs")
    golden_queries: str | None = Field(None, description="JSONL of {query, expected_doc_ids}; none = no golden gate")
    golden_k: int = Field(10, ge=1, description="k for golden recall@k")
    golden_min_recall: float = Field(0.5, ge=0.0, le=1.0, description="golden recall@k must reach this")
    golden_max_drop: float = Field(0.05, ge=0.0, le=1.0, description="and may fall at most this much below the live collection")
    allow_model_change: bool = Field(False, description="allow a different model/dim/instruction (full mode only)")
    green_timeout_s: float = Field(600.0, gt=0, description="full mode: wait this long for the new collection to turn green")


class IndexConfig(BaseModel):
    """Everything `qbatch index` needs."""

    model_config = ConfigDict(extra="forbid")

    source: SourceConfig = Field(..., description="the corpus")
    columns: ColumnsConfig = Field(default_factory=ColumnsConfig, description="which columns mean what")
    chunking: ChunkingConfig = Field(default_factory=ChunkingConfig, description="token chunking")
    embed: EmbedConfig = Field(..., description="embedding model and actor pool")
    qdrant: QdrantConfig = Field(default_factory=QdrantConfig, description="vector store")
    run: RunConfig = Field(default_factory=RunConfig, description="outputs, mode and exit policy")
    gates: GatesConfig = Field(default_factory=GatesConfig, description="validation gates")

    @model_validator(mode="after")
    def _cross_checks(self) -> "IndexConfig":
        self.columns.template_fields()  # raises on a malformed template
        if self.chunking.enabled and self.chunking.max_tokens > self.embed.max_length:
            raise ValueError("chunking.max_tokens must not exceed embed.max_length")
        if self.gates.allow_model_change and self.run.mode != "full":
            raise ValueError("gates.allow_model_change needs run.mode = 'full' (a migration is a rebuild)")
        reserved = RESERVED_PAYLOAD_KEYS.intersection(self.columns.payload)
        if reserved:
            raise ValueError(f"columns.payload {sorted(reserved)} clash with payload keys qbatch writes; rename them")
        return self


class IndexAdminConfig(BaseModel):
    """What `qbatch index status|rollback` need: the index config file's qdrant and run sections
    (the other sections may be present and are ignored)."""

    model_config = ConfigDict(extra="ignore")

    qdrant: QdrantConfig = Field(default_factory=QdrantConfig, description="vector store")
    run: RunConfig = Field(default_factory=RunConfig, description="output_uri holds the manifests")
    source: SourceConfig | None = Field(None, description="object-store options for output_uri")

    @property
    def storage(self):
        return self.source.storage if self.source else None
