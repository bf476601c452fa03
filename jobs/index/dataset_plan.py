"""Builds the index job's Ray Data plan: read (one task per file) -> prep (tokenise, chunk) ->
embed (actor pool) -> driver. Pool sizes come from the cluster's resources, leaving CPU for the
read and prep stages: an embed pool that reserves every CPU starves them and the job stalls."""

from __future__ import annotations

import logging

from jobs.index.config import IndexConfig
from jobs.runtime.actor_pool import PoolPlan

log = logging.getLogger("qbatch.index")


def build_index_dataset(cfg: IndexConfig, files, fingerprint: dict, dim: int, pools: PoolPlan,
                        read_batch_rows: int = 1024, keep_lines: dict[str, str] | None = None,
                        scan_only: bool = False):
    """The lazy Ray dataset of embedded chunk rows, in input order (`scan_only`: prepared document
    rows with hashes and no vectors, for the diff pass of an incremental run)."""
    import ray

    from connectors.corpus_datasource import CorpusDatasource
    from pipeline.embed_stage import EmbedStage
    from pipeline.prep_stage import PrepStage

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # first occurrence of a duplicate id wins, deterministically
    ds = ray.data.read_datasource(
        CorpusDatasource(files, cfg.source.storage, batch_rows=read_batch_rows, columns=cfg.columns.input_columns(),
                         keep_lines=keep_lines),
        num_cpus=pools.read_num_cpus,
    )
    tokenizer_factory = DocumentTokenizerFactory(cfg.embed.model, cfg.embed.max_length, cfg.embed.doc_instruction)
    ds = ds.map_batches(
        PrepStage,
        fn_constructor_args=(cfg.columns.model_dump(), cfg.chunking.model_dump(), tokenizer_factory,
                             fingerprint, dim, cfg.embed.doc_instruction, scan_only),
        batch_format="pyarrow", batch_size=None, num_cpus=pools.prep_num_cpus,
        compute=ray.data.ActorPoolStrategy(size=pools.prep_concurrency),
    )
    if scan_only:
        return ds
    embedder_kwargs = dict(name_or_path=cfg.embed.model, dim=cfg.embed.dim, max_length=cfg.embed.max_length,
                           device=cfg.embed.device, dtype=cfg.embed.dtype, max_batch_tokens=cfg.embed.max_batch_tokens)
    ds = ds.map_batches(
        EmbedStage,
        fn_constructor_args=(embedder_kwargs, pools.torch_threads),
        batch_format="pyarrow", batch_size=cfg.embed.batch_size,
        compute=ray.data.ActorPoolStrategy(min_size=pools.concurrency[0], max_size=pools.concurrency[1]),
        num_cpus=pools.num_cpus, num_gpus=pools.num_gpus or None,
    )
    return ds


class DocumentTokenizerFactory:
    """Picklable: each prep actor loads the tokenizer (not the weights) once."""

    def __init__(self, model: str, max_length: int, doc_instruction: str | None):
        self.model, self.max_length, self.doc_instruction = model, max_length, doc_instruction

    def __call__(self):
        from pipeline.embedding_tokenizer import DocumentTokenizer, EmbeddingTokenizer

        return DocumentTokenizer(EmbeddingTokenizer.from_pretrained(self.model, max_length=self.max_length),
                                 self.doc_instruction)
