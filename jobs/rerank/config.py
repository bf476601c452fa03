"""The typed config of `qbatch rerank`: queries (a query log), documents (corpus or Qdrant payload),
candidates, reranker, qdrant, output, run. Source and Qdrant sections are the index job's own types."""

from __future__ import annotations

import datetime as _dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from qbatch.connectors.qdrant_config import QdrantConfig
from qbatch.connectors.source_config import ObjectStoreOptions, SourceConfig
from qbatch.jobs.runtime.actor_pool import ModelActorPoolConfig
from qbatch.jobs.runtime.run_fields import JobRunFields


class QueryLogColumns(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query_id: str = Field("query_id", description="query id column")
    query: str = Field("query", description="query text column")
    doc_id: str = Field("doc_id", description="candidate doc id (long shape, and inside nested candidates)")
    rank: str = Field("rank", description="original rank (optional column)")
    score: str = Field("score", description="original score (optional column)")
    label: str = Field("label", description="relevance label, binary or graded (optional column)")
    ts: str = Field("ts", description="timestamp (optional column)")
    candidates: str = Field("candidates", description="list-of-structs column (nested shape)")


class QueryLogConfig(SourceConfig):
    """A query log: Parquet or JSONL on local disk or S3, long or nested."""

    shape: Literal["long", "nested"] = Field(
        "long", description="long: one row per (query, candidate); nested: one row per query with a candidates list")
    columns: QueryLogColumns = Field(default_factory=QueryLogColumns, description="column names")


class DocumentsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: Literal["qdrant", "corpus"] = Field(
        "qdrant", description="where candidate texts come from: the index's Qdrant payload, or a corpus dataset")
    corpus: SourceConfig | None = Field(None, description="the corpus dataset (documents.source = corpus)")
    id_column: str = Field("id", description="corpus doc id column")
    text_column: str | None = Field("text", description="corpus text column")
    text_template: str | None = Field(None, description="corpus text template, e.g. '{title}\\n{description}'")

    @model_validator(mode="after")
    def _corpus_needs_source(self) -> "DocumentsConfig":
        if self.source == "corpus" and self.corpus is None:
            raise ValueError("documents.source = 'corpus' needs documents.corpus.uri")
        if self.source == "corpus" and not (self.text_column or self.text_template):
            raise ValueError("set documents.text_column or documents.text_template")
        return self


class CandidatesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    retrieve_top_k: int = Field(0, ge=0, le=1000,
                                description="for queries without candidates, retrieve this many from the Qdrant alias; 0 = off")
    max_per_query: int = Field(1000, ge=1, description="candidates beyond this many per query are dead-lettered")
    embed_model: str | None = Field(
        None, description="retrieval: local path of the collection's embedding model when its recorded name is "
                          "not loadable; its digest must match the recorded model_revision")
    embed_device: str | None = Field(None, description="retrieval: device for the query embedder; none = cuda if available")
    embed_num_gpus: float | None = Field(
        None, ge=0, description="retrieval: GPUs of the query-embedding Ray actor; none = reranker.num_gpus "
                                "(it waits for them up to reranker.resources_wait_s)")
    spill_buckets: int | None = Field(
        None, ge=1, le=4096, description="query_id hash buckets the log is partitioned into on local disk; "
                                         "none = one per 64 MiB of log files")


class RerankerConfig(ModelActorPoolConfig):
    """The reranker model and its actor pool (concurrency, num_gpus, num_cpus from the base)."""

    model: str = Field(..., description="Qwen3-Reranker checkpoint path or hub name")
    instruction: str | None = Field(None, description="task instruction; none = the default web-search task")
    max_length: int = Field(8192, ge=32, description="max tokens per (query, document) pair")
    queries_per_batch: int = Field(16, ge=1, description="queries handed to an actor per call")


class RerankOutputConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    uri: str = Field("./qbatch-rerank", description="output table root (path or s3://); partitions run_date=YYYY-MM-DD")
    run_date: _dt.date | None = Field(None, description="partition date; none = today (UTC)")
    redact_queries: bool = Field(False, description="write an HMAC of the query instead of its text (also in logs and dead letters)")
    hmac_key_env: str = Field("QBATCH_QUERY_HMAC_KEY", description="environment variable holding the HMAC key")
    storage: ObjectStoreOptions | None = Field(None, description="object-store settings for output.uri; none = queries.storage")


class RerankRunConfig(JobRunFields):
    """Run id (none = the run date) and exit policy; nothing beyond the shared run fields."""


class RerankConfig(BaseModel):
    """Everything `qbatch rerank` needs."""

    model_config = ConfigDict(extra="forbid")

    queries: QueryLogConfig = Field(..., description="the query log")
    documents: DocumentsConfig = Field(default_factory=DocumentsConfig, description="candidate texts")
    candidates: CandidatesConfig = Field(default_factory=CandidatesConfig, description="candidate handling")
    reranker: RerankerConfig = Field(..., description="reranker model and actor pool")
    qdrant: QdrantConfig = Field(default_factory=QdrantConfig, description="Qdrant (payload texts, retrieval)")
    output: RerankOutputConfig = Field(default_factory=RerankOutputConfig, description="result tables")
    run: RerankRunConfig = Field(default_factory=RerankRunConfig, description="run id and exit policy")
