"""Builds the index job's Ray Data plan: read (one task per file, cut into checkpoint units) -> prep
(tokenise, chunk) -> embed (actor pool) -> Qdrant writer (actor pool) -> driver, which receives only
acknowledgement rows. Pool sizes come from the cluster's resources, leaving CPU for the read and prep
stages: an embed pool that reserves every CPU starves them and the job stalls. Nothing here needs rows
in order: duplicates are decided by the run's plan before embedding, and units are checkpointed by
count (jobs/index/ack_book.py)."""

from __future__ import annotations

import logging

from dataclasses import dataclass
from typing import Any

from qbatch.jobs.index.config import IndexConfig
from qbatch.jobs.runtime.actor_pool import PoolPlan

log = logging.getLogger("qbatch.index")


@dataclass(frozen=True)
class WriterTarget:
    """Where the writer stage writes: the collection, the run's payload fields, and the undo log of an
    in-place run (None for a new collection)."""

    qdrant: Any  # qbatch.connectors.qdrant_config.QdrantConfig, with local paths absolute and the API key resolved
    collection: str
    run_id: str
    indexed_at: str
    payload_columns: list[str]
    undo: dict | None = None  # {"run_folder": ..., "storage": ...}


@dataclass(frozen=True)
class ReadPlan:
    """What the readers send on: per file, the records to process (None = all), the records to mark as
    duplicates, and the checkpoint units an earlier attempt finished."""

    keep_lines: dict[str, str] | None = None
    duplicate_lines: dict[str, str] | None = None
    skip_units: dict[str, set[int]] | None = None


def build_index_dataset(cfg: IndexConfig, files, fingerprint: dict, dim: int, pools: PoolPlan,
                        read: ReadPlan = ReadPlan(), writer: WriterTarget | None = None, scan_only: bool = False,
                        tokenizer_snapshot: str | None = None):
    """The lazy Ray dataset of acknowledgement rows (`writer`), or of prepared document rows with hashes
    and no tokens or vectors (`scan_only`, for a run's plan). `tokenizer_snapshot`
    (pipeline/backend_tokenizer.py) spares each prep actor loading the tokenizer with transformers."""
    import ray

    from qbatch.connectors.corpus_datasource import CorpusDatasource
    from qbatch.pipeline.prep_stage import PrepStage, scan_records

    files = list(files)
    uris = {f.uri for f in files}
    only = lambda mapping: {u: v for u, v in (mapping or {}).items() if u in uris}  # noqa: E731
    ds = ray.data.read_datasource(
        CorpusDatasource(files, cfg.source.storage, batch_rows=cfg.embed.batch_size,
                         columns=cfg.columns.input_columns(),
                         keep_lines=only(read.keep_lines) if read.keep_lines is not None else None,
                         unit_rows=cfg.run.checkpoint_rows, skip_units=only(read.skip_units),
                         duplicate_lines=only(read.duplicate_lines)),
        num_cpus=pools.scan_num_cpus if scan_only else pools.read_num_cpus,
    )
    # This dataset's own context (never the process-global one): bounded blocks, in no particular order.
    ds.context.target_max_block_size = cfg.run.block_bytes
    ds.context.execution_options.preserve_order = False
    prep_args = (cfg.columns.model_dump(), cfg.chunking.model_dump())
    if scan_only:
        # Hashes need no tokenizer, so nothing is worth loading once per actor: plain tasks, fused with the
        # read (same CPU share), on worker processes Ray already has, and as many as the CPUs allow.
        return ds.map_batches(scan_records, fn_args=(*prep_args, fingerprint, dim, cfg.embed.doc_instruction),
                              batch_format="pyarrow", batch_size=None, num_cpus=pools.scan_num_cpus)
    tokenizer_factory = DocumentTokenizerFactory(cfg.embed.model, cfg.embed.max_length, cfg.embed.doc_instruction,
                                                 tokenizer_snapshot)
    ds = ds.map_batches(
        PrepStage,
        fn_constructor_args=(*prep_args, tokenizer_factory, fingerprint, dim, cfg.embed.doc_instruction),
        batch_format="pyarrow", batch_size=None, num_cpus=pools.prep_num_cpus,
        compute=ray.data.ActorPoolStrategy(size=pools.prep_concurrency),
    )
    if writer is None:
        raise ValueError("an embedding pass needs a writer target")
    from qbatch.connectors.qdrant_writer_stage import QdrantWriterStage
    from qbatch.pipeline.embed_stage import EmbedStage

    embedder_kwargs = dict(name_or_path=cfg.embed.model, dim=cfg.embed.dim, max_length=cfg.embed.max_length,
                           device=cfg.embed.device, dtype=cfg.embed.dtype, max_batch_tokens=cfg.embed.max_batch_tokens)
    # A batch may cut a document between chunks: the writer acks each part, the driver joins them.
    ds = ds.map_batches(
        EmbedStage,
        fn_constructor_args=(embedder_kwargs, pools.torch_threads),
        batch_format="pyarrow", batch_size=cfg.embed.batch_size,
        compute=ray.data.ActorPoolStrategy(min_size=pools.concurrency[0], max_size=pools.concurrency[1]),
        num_cpus=pools.num_cpus, num_gpus=pools.num_gpus or None,
    )
    # The one writer of a local folder must run where the folder is: pinned to the driver's node.
    pinned = {"ray.io/node-id": ray.get_runtime_context().get_node_id()} if writer.qdrant.is_local else None
    ds = ds.map_batches(
        QdrantWriterStage,
        fn_constructor_args=(writer.qdrant, writer.collection, writer.run_id, writer.indexed_at,
                             writer.payload_columns, writer.undo),
        batch_format="pyarrow", batch_size=None, num_cpus=pools.writer_num_cpus,
        compute=ray.data.ActorPoolStrategy(size=pools.writers), label_selector=pinned,
    )
    return ds


class DocumentTokenizerFactory:
    """Picklable: each prep actor builds the tokenizer (not the weights) once, from the driver's snapshot
    when there is one (no transformers import), else by loading it with transformers."""

    def __init__(self, model: str, max_length: int, doc_instruction: str | None, snapshot: str | None = None):
        self.model, self.max_length, self.doc_instruction = model, max_length, doc_instruction
        self.snapshot = snapshot

    def __call__(self):
        from qbatch.pipeline.embedding_tokenizer import DocumentTokenizer, EmbeddingTokenizer

        tokenizer = EmbeddingTokenizer.from_pretrained(self.model, max_length=self.max_length,
                                                       defer_loading=self.snapshot is not None)
        if self.snapshot is not None:
            from qbatch.pipeline.backend_tokenizer import BackendTokenizer

            tokenizer.hf_tokenizer = BackendTokenizer(self.snapshot)  # the setter checks the end-token rule
        return DocumentTokenizer(tokenizer, self.doc_instruction)
