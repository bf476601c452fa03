"""The driver side of `qbatch rerank` before scoring: read the query log, partition it by query, group
each query's candidates, retrieve for queries without any, and attach document texts.

Memory bound: the log is streamed file by file (one reader batch at a time) into `n` query_id hash
buckets on local disk (connectors/bucket_spill.py), so every row of a query lands in one bucket and a
bucket is the unit held in memory: the driver holds one bucket's candidate rows and QueryGroups, plus
the set of distinct candidate doc ids and, with documents from a corpus, their texts.
"""

from __future__ import annotations

import logging
import math
import pickle
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from qbatch.connectors.bucket_spill import BucketSpill
from qbatch.common.end_of_file import END_OF_FILE
from qbatch.connectors.corpus_file_reader import iter_record_batches
from qbatch.connectors.corpus_listing import CorpusFile
from qbatch.jobs.rerank.config import RerankConfig
from qbatch.pipeline.query_log import CANDIDATE_SCHEMA, LogColumns, QueryGroup, group_candidates, parse_log_records, reject
from qbatch.pipeline.query_redaction import QueryRedactor

log = logging.getLogger("qbatch.rerank")
_BYTES_PER_BUCKET = 64 << 20
# BucketSpill partitions on a column named doc_id: the query id travels under that name while spilled.
_SPILL_SCHEMA = pa.schema([pa.field("doc_id", pa.string()) if f.name == "query_id" else
                           pa.field("candidate_id" if f.name == "doc_id" else f.name, f.type) for f in CANDIDATE_SCHEMA])


def bucket_count(cfg: RerankConfig, files: list[CorpusFile]) -> int:
    if cfg.candidates.spill_buckets:
        return cfg.candidates.spill_buckets
    return max(1, min(4096, math.ceil(sum(f.size for f in files) / _BYTES_PER_BUCKET)))


class RerankInputs:
    """`read_log()` then `prepare(retriever)` then `iter_group_tables()`; `counts` and `rejects` tally."""

    def __init__(self, cfg: RerankConfig, files: list[CorpusFile], client, redactor: QueryRedactor):
        self.cfg, self.files, self.client, self.redactor = cfg, files, client, redactor
        self.cols = LogColumns(**{k: v for k, v in cfg.queries.columns.model_dump().items() if k != "ts"})
        self.n_buckets = bucket_count(cfg, files)
        self.counts = {"log_rows_read": 0, "candidates_read": 0, "queries": 0, "queries_retrieved": 0,
                       "candidates_retrieved": 0, "candidates_to_score": 0}
        self.wanted: set[str] = set()
        self._dir = Path(tempfile.mkdtemp(prefix="qbatch-rerank-"))

    def read_log(self, dead_letter) -> None:
        """Stream every log file into the query buckets; bad rows go to the dead-letter writer."""
        self._spill = BucketSpill(_SPILL_SCHEMA, self.n_buckets, directory=str(self._dir))
        seq = 0
        for file in self.files:
            for raw in iter_record_batches(file, self.cfg.queries.storage):
                raw = raw.filter(pc.invert(pc.fill_null(pc.equal(raw.column("_read_error"), END_OF_FILE), False)))
                rows, rejects, read = parse_log_records(raw, self.cols, self.cfg.queries.shape, seq, self.redactor)
                seq += rows.num_rows
                self.counts["log_rows_read"] += raw.num_rows
                self.counts["candidates_read"] += read
                dead_letter.write(rejects)
                self._spill.add(rows.rename_columns(_SPILL_SCHEMA.names))

    def prepare(self, retriever, dead_letter) -> None:
        """Group each bucket's queries, fill empty ones by retrieval (or dead-letter them), and keep the
        groups on local disk; collects the doc ids whose texts are needed."""
        for i in range(self.n_buckets):
            rows = self._spill.read(i).rename_columns(CANDIDATE_SCHEMA.names)
            groups, rejects = group_candidates(rows, self.cfg.candidates.max_per_query, self.redactor)
            dead_letter.write(rejects)
            self.counts["queries"] += len(groups)
            if retriever is not None:
                before = sum(1 for g in groups if not g.candidates)
                added = retriever.fill(groups)
                self.counts["queries_retrieved"] += before
                self.counts["candidates_retrieved"] += added
            kept = []
            for g in groups:
                if g.candidates:
                    kept.append(g)
                    self.wanted.update(c.doc_id for c in g.candidates)
                else:
                    why = "retrieval found nothing" if retriever is not None else \
                        "the query was logged without candidates and retrieval is off (candidates.retrieve_top_k = 0)"
                    dead_letter.write([reject("no_candidates", "group", why, original_row=self.redactor.row_json(
                        {"query_id": g.query_id, "query": g.query}, "query"))])
            with open(self._dir / f"groups-{i:05d}.pkl", "wb") as f:
                pickle.dump(kept, f, protocol=pickle.HIGHEST_PROTOCOL)
        self._spill.close()

    def iter_groups(self, dead_letter) -> Iterator[list[QueryGroup]]:
        """Per bucket, its groups with texts attached; candidates without a text are dead-lettered."""
        from qbatch.connectors.document_lookup import corpus_texts, payload_texts

        docs = self.cfg.documents
        corpus = corpus_texts(docs.corpus, docs.id_column, docs.text_column, docs.text_template, self.wanted) \
            if docs.source == "corpus" else None
        for i in range(self.n_buckets):
            with open(self._dir / f"groups-{i:05d}.pkl", "rb") as f:
                groups: list[QueryGroup] = pickle.load(f)
            texts = corpus if corpus is not None else payload_texts(
                self.client, self.cfg.qdrant.collection, {c.doc_id for g in groups for c in g.candidates})
            out = []
            for g in groups:
                found = []
                for c in g.candidates:
                    c.text = texts.get(c.doc_id)
                    if c.text is None:
                        dead_letter.write([self._missing(g, c)])
                    else:
                        found.append(c)
                g.candidates = found
                if found:
                    out.append(g)
                    self.counts["candidates_to_score"] += len(found)
            yield out

    def _missing(self, g: QueryGroup, c: Any) -> dict[str, Any]:
        where = "documents.corpus" if self.cfg.documents.source == "corpus" else \
            f"the payload of {self.cfg.qdrant.collection!r} (chunk 0)"
        row = {"query_id": g.query_id, "query": g.query, "doc_id": c.doc_id, "source": c.source,
               "orig_rank": c.orig_rank, "orig_score": c.orig_score, "label": c.label}
        return reject("missing_document", "lookup", f"no text for doc_id {c.doc_id!r} in {where}", doc_id=c.doc_id,
                      file=c.file, line=c.line, original_row=self.redactor.row_json(row, "query"))

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)

