"""The Qdrant-facing stages of the rerank prepare plan, over PREP_SCHEMA rows (pipeline/rerank_rows.py):

- `RetrievalStage` (an actor pool, one embedding model per actor): rows of queries logged without
  candidates become up to k candidate rows each (`source = "retrieved"`, orig_rank = hit order,
  orig_score = the hit's score), from one batched search per call; a query nothing was found for keeps
  its row and is dead-lettered later as `no_candidates`.
- `PayloadLookupStage` (an actor pool): each candidate row's text, the chunk-0 payload of its doc id.

Everything that shapes the query vector (model, dim, query instruction, max_length) comes from the
collection's recorded spec, so queries land in the documents' space. `qdrant` is a
qbatch.connectors.qdrant_candidates.QdrantCandidates, handed in, so this module never imports a Qdrant client."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from qbatch.pipeline.rerank_rows import CANDIDATE, PREP_SCHEMA, conform, rows_table, stats_row


class PayloadLookupStage:
    """Fills `text` of every candidate row with a doc id (null where the payload has none)."""

    def __init__(self, qdrant: Any):
        self.qdrant = qdrant.open()

    def __call__(self, block: pa.Table) -> pa.Table:
        block = conform(block)
        doc_ids = block.column("doc_id").to_pylist()
        kinds = block.column("kind").to_pylist()
        wanted = {d for d, k in zip(doc_ids, kinds) if k == CANDIDATE and d is not None}
        before = self.qdrant.requests["lookup_requests"]
        texts = self.qdrant.texts(wanted) if wanted else {}
        column = pa.array([texts.get(d) if k == CANDIDATE and d is not None else t
                           for d, k, t in zip(doc_ids, kinds, block.column("text").to_pylist())], pa.string())
        out = block.set_column(PREP_SCHEMA.get_field_index("text"), "text", column)
        used = self.qdrant.requests["lookup_requests"] - before
        return pa.concat_tables([out, rows_table([stats_row({"lookup_requests": used})])]) if used else out


class RetrievalStage:
    """Embeds the queries of a batch of rows that need retrieval and searches them in one request."""

    def __init__(self, embedder_kwargs: dict[str, Any], instruction: str | None, k: int, qdrant: Any,
                 expected_revision: str | None, torch_threads: int | None = None):
        if torch_threads:
            import torch

            torch.set_num_threads(int(torch_threads))
        from qbatch.pipeline.embedder import Embedder

        self.embedder = Embedder.from_pretrained(**embedder_kwargs)
        if expected_revision is not None and self.embedder.model_fingerprint["sha"] != expected_revision:
            raise ValueError(f"{embedder_kwargs['name_or_path']} has digest {self.embedder.model_fingerprint['sha']}, "
                             f"but the collection was built with {expected_revision}: its vectors would not match")
        self.instruction, self.k, self.qdrant = instruction, int(k), qdrant.open()

    def __call__(self, block: pa.Table) -> pa.Table:
        block = conform(block)
        flagged = pc.fill_null(block.column("needs_retrieval"), False)
        rows, passing = block.filter(flagged).to_pylist(), block.filter(pc.invert(flagged))
        if not rows:
            return block
        vectors = self.embedder.embed_queries([r["query"] for r in rows], instruction=self.instruction)
        # Chunked documents can hit several times: over-fetch, keep each doc's best chunk.
        hits = self.qdrant.search(np.asarray(vectors, dtype=np.float32).tolist(), self.k * 3)
        out, found = [], 0
        for row, row_hits in zip(rows, hits):
            seen: list[str] = []
            for doc_id, score in row_hits:
                if doc_id is None or doc_id in seen:
                    continue
                seen.append(doc_id)
                out.append({**row, "doc_id": doc_id, "source": "retrieved", "orig_rank": len(seen),
                            "orig_score": score, "label": None, "item": len(seen) - 1, "needs_retrieval": False})
                if len(seen) == self.k:
                    break
            if seen:
                found += 1
            else:
                out.append({**row, "needs_retrieval": False})  # nothing found: dead-lettered as no_candidates
        stats = stats_row({"queries_retrieved": len(rows), "candidates_retrieved": len(out) - (len(rows) - found),
                           "search_requests": 1})
        return pa.concat_tables([passing, conform(rows_table(out)), rows_table([stats])])

