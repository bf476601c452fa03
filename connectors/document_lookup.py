"""Candidate texts by doc id: from a corpus dataset (the index job's source spec and id/text rules) or
from the Qdrant payload the index job wrote.

Qdrant: a document's text is the `text` payload of its chunk 0 (point id `point_id(doc_id, 0)`),
i.e. the document's start. Later chunks are not joined: they overlap, so joining would repeat text,
and the reranker truncates a long pair at the document's tail anyway, so the start is what it reads.
A document indexed with `qdrant.store_text = false` has no text there and counts as missing.
"""

from __future__ import annotations

from collections.abc import Iterable

from qbatch.connectors.corpus_file_reader import iter_record_batches
from qbatch.connectors.corpus_listing import list_corpus_files
from qbatch.connectors.point_ids import point_id
from qbatch.connectors.source_config import SourceConfig

_RETRIEVE_BATCH = 256


def corpus_texts(corpus: SourceConfig, id_column: str, text_column: str | None, text_template: str | None,
                 wanted: set[str]) -> dict[str, str]:
    """Texts of the `wanted` doc ids found in the corpus; the first record of an id wins (as in the
    index job). Rows that fail the index job's validation are skipped, so their ids count as missing."""
    from qbatch.common.row_validation import ColumnSpec, validate_raw_records

    spec = ColumnSpec(id=id_column, text=text_column, text_template=text_template)
    texts: dict[str, str] = {}
    if not wanted:
        return texts
    for file in list_corpus_files(corpus):
        for raw in iter_record_batches(file, corpus.storage):
            for row in validate_raw_records(raw, spec):
                if row.ok and row.doc_id in wanted and row.doc_id not in texts:
                    texts[row.doc_id] = row.text  # type: ignore[assignment]
            if len(texts) == len(wanted):
                return texts
    return texts


def payload_texts(client, collection: str, doc_ids: Iterable[str]) -> dict[str, str]:
    """Texts of chunk 0 of each doc id from the collection (or alias) payload; absent ids are left out."""
    ids = sorted(set(doc_ids))
    texts: dict[str, str] = {}
    for start in range(0, len(ids), _RETRIEVE_BATCH):
        part = ids[start:start + _RETRIEVE_BATCH]
        by_point = {point_id(d, 0): d for d in part}
        records = client.retrieve(collection, ids=list(by_point), with_payload=True, with_vectors=False)
        for record in records:
            payload = record.payload or {}
            doc_id = by_point.get(str(record.id))
            text = payload.get("text")
            # The payload's doc_id must agree with the id we asked for; anything else is not our document.
            if doc_id is not None and str(payload.get("doc_id")) == doc_id and isinstance(text, str) and text.strip():
                texts[doc_id] = text
    return texts

