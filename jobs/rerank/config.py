"""The typed config of `qbatch rerank`: queries (a query log), documents (corpus or Qdrant payload),
candidates, reranker, qdrant, output, run. Source and Qdrant sections are the index job's own types."""

from __future__ import annotations

import datetime as _dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from qbatch.connectors.iceberg_config import IcebergCatalogConfig
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
        "qdrant", description="where candidate texts come from: the index's Qdrant payload (looked up by actors), "
                              "or a corpus dataset (a distributed join on doc id)")
    corpus: SourceConfig | None = Field(None, description="the corpus dataset (documents.source = corpus)")
    id_column: str = Field("id", description="corpus doc id column")
    text_column: str | None = Field("text", description="corpus text column")
    text_template: str | None = Field(None, description="corpus text template, e.g. '{title}\\n{description}'")
    lookup_actors: int = Field(2, ge=1, le=64, description="documents.source = qdrant against a server: payload "
                                                          "lookup actors, one client each (local mode uses one)")

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
    embed_concurrency: tuple[int, int] = Field(
        (1, 1), description="retrieval: query-embedding actors as [min, max] (each searches Qdrant for its batches)")
    search_batch_size: int = Field(64, ge=1, le=1024, description="retrieval: queries embedded and searched per "
                                                                   "request (one query_batch_points call)")
    spill_buckets: int | None = Field(
        None, ge=1, le=4096, description="deprecated and ignored (the log is now partitioned by the Ray Data plan; "
                                         "see run.prepare_partitions); accepted so that existing configs load")

    @field_validator("embed_concurrency", mode="before")
    @classmethod
    def _int_or_pair(cls, v):
        return (v, v) if isinstance(v, int) else v

    @model_validator(mode="after")
    def _retrieval_within_the_cap(self) -> "CandidatesConfig":
        if self.retrieve_top_k > self.max_per_query:
            raise ValueError(f"candidates.retrieve_top_k ({self.retrieve_top_k}) exceeds candidates.max_per_query "
                             f"({self.max_per_query}); raise max_per_query or lower retrieve_top_k")
        lo, hi = self.embed_concurrency
        if lo < 1 or hi < lo:
            raise ValueError("candidates.embed_concurrency must be [min, max] with 1 <= min <= max")
        return self


class RerankerConfig(ModelActorPoolConfig):
    """The reranker model and its actor pool (concurrency, num_gpus, num_cpus from the base)."""

    model: str = Field(..., description="Qwen3-Reranker checkpoint path or hub name")
    instruction: str | None = Field(None, description="task instruction; none = the default web-search task")
    max_length: int = Field(8192, ge=32, description="max tokens per (query, document) pair")
    candidates_per_chunk: int = Field(
        256, ge=1, description="a query's candidates are scored in chunks of at most this many, in one actor call, "
                               "each chunk running the query's shared prefix once; ranks span all its chunks")
    queries_per_batch: int = Field(16, ge=1, description="deprecated and ignored (an actor call now scores one "
                                                         "prepared part, run.pairs_per_part); accepted so that "
                                                         "existing configs load")


class RerankOutputConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    uri: str = Field("./qbatch-rerank", description="output root (path or s3://): the Parquet table's partitions "
                                                    "run_date=YYYY-MM-DD, and for both formats dead letters, "
                                                    "reports, staging and locks; with format = iceberg and no "
                                                    "catalog, also the embedded catalog (_iceberg/)")
    format: Literal["parquet", "iceberg"] = Field(
        "parquet", description="parquet: run_date= partition folders with _SUCCESS; iceberg: one snapshot per run "
                               "date's commit in an Iceberg table (needs the qbatch[iceberg] extra)")
    catalog: IcebergCatalogConfig | None = Field(
        None, description="format = iceberg: the catalog and tables; none = an embedded SQLite catalog under a "
                          "local output.uri")
    run_date: _dt.date | None = Field(None, description="partition date; none = today (UTC)")
    redact_queries: bool = Field(False, description="write an HMAC of the query instead of its text (also in logs and dead letters)")
    hmac_key_env: str = Field("QBATCH_QUERY_HMAC_KEY", description="environment variable holding the HMAC key")
    storage: ObjectStoreOptions | None = Field(None, description="object-store settings for output.uri (and an "
                                                                  "Iceberg warehouse's s3.* defaults); none = "
                                                                  "queries.storage")

    @model_validator(mode="after")
    def _iceberg_needs(self) -> "RerankOutputConfig":
        if self.format != "iceberg":
            return self
        from qbatch.connectors.iceberg_tables import iceberg_available

        if not iceberg_available():
            raise ValueError("output.format = 'iceberg' needs pyiceberg: pip install 'qbatch[iceberg]'")
        if self.catalog is None and "://" in self.uri and not self.uri.startswith("file://"):
            raise ValueError(f"output.format = 'iceberg' with an object-store output.uri ({self.uri}) needs "
                             "output.catalog (type, properties such as uri and warehouse, namespace, table): the "
                             "embedded SQLite catalog only serves a local output.uri")
        return self


class RerankRunConfig(JobRunFields):
    """Run id (none = the run date), exit policy, and how the prepare phase cuts the work."""

    pairs_per_part: int = Field(
        20_000, ge=1, description="prepare packs whole queries into parts of at most this many pairs (a bigger "
                                  "query gets a part of its own): the unit of scoring, checkpointing and resume")
    prepare_partitions: int | None = Field(
        None, ge=1, le=100_000, description="hash partitions of the prepare phase's shuffles (join, group by "
                                            "query); none = one per 32 MiB of log files, at least the cluster's CPUs")
    disk_shuffle: bool = Field(
        False, description="shuffle through local disk instead of Ray's object store (Ray Data's "
                           "use_disk_based_hash_shuffle): for logs larger than the cluster's object store")


class RerankConfig(BaseModel):
    """Everything `qbatch rerank` needs."""

    model_config = ConfigDict(extra="forbid")

    queries: QueryLogConfig = Field(..., description="the query log")
    documents: DocumentsConfig = Field(default_factory=DocumentsConfig, description="candidate texts")
    candidates: CandidatesConfig = Field(default_factory=CandidatesConfig, description="candidate handling")
    reranker: RerankerConfig = Field(..., description="reranker model and actor pool")
    qdrant: QdrantConfig = Field(default_factory=QdrantConfig, description="Qdrant (payload texts, retrieval)")
    output: RerankOutputConfig = Field(default_factory=RerankOutputConfig, description="result tables")
    run: RerankRunConfig = Field(default_factory=RerankRunConfig, description="run id, exit policy, prepare phase")

    def deprecated_fields(self) -> list[str]:
        """Fields set in this config that are accepted but no longer used, each with what replaced it."""
        out = []
        if "spill_buckets" in self.candidates.model_fields_set:
            out.append("candidates.spill_buckets is ignored: the Ray Data plan partitions the log "
                       "(run.prepare_partitions)")
        if "queries_per_batch" in self.reranker.model_fields_set:
            out.append("reranker.queries_per_batch is ignored: an actor call scores one prepared part "
                       "(run.pairs_per_part)")
        return out
