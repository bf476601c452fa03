"""What a rerank run's prepare phase depends on, stored with it, so that a resumed attempt (same run id)
only goes on when nothing it depends on changed: the config fields that shape the prepared parts or the
scores, and the listings of the log (and corpus). Anything else is an error that names what changed."""

from __future__ import annotations

import hashlib
from typing import Any

from qbatch.common.errors import ConfigError, SourceError
from qbatch.connectors.corpus_listing import CorpusFile
from qbatch.connectors.run_plan_store import listing_record

_HMAC_PROBE = "qbatch-key-fingerprint"


def run_fingerprint(cfg, redactor) -> dict[str, Any]:
    """The config fields a run's prepared parts, dead letters and scores depend on (no secrets)."""
    docs = cfg.documents
    return {
        "queries": cfg.queries.model_dump(mode="json", exclude={"storage"}),
        "documents": {"source": docs.source, "corpus": docs.corpus.uri if docs.corpus else None,
                      "corpus_glob": docs.corpus.glob if docs.corpus else None, "id_column": docs.id_column,
                      "text_column": docs.text_column, "text_template": docs.text_template},
        "candidates": {"retrieve_top_k": cfg.candidates.retrieve_top_k, "max_per_query": cfg.candidates.max_per_query,
                       "embed_model": cfg.candidates.embed_model},
        "qdrant.collection": cfg.qdrant.collection if docs.source == "qdrant" or cfg.candidates.retrieve_top_k else None,
        "reranker": {"model": cfg.reranker.model, "instruction": cfg.reranker.instruction,
                     "max_length": cfg.reranker.max_length, "dtype": cfg.reranker.dtype},
        "output.redact_queries": cfg.output.redact_queries,
        # Which key redacted the dead letters already written: a digest under the key, never the key.
        "output.hmac_key": hashlib.sha256((redactor.redact(_HMAC_PROBE) or "").encode()).hexdigest()[:16]
        if redactor.enabled else None,
        "run.pairs_per_part": cfg.run.pairs_per_part,
    }


def _flatten(doc: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(doc, dict):
        out: dict[str, Any] = {}
        for key, value in doc.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else key))
        return out
    return {prefix: doc}


def check_unchanged(saved: dict[str, Any], fingerprint: dict[str, Any], files: list[CorpusFile],
                    corpus_files: list[CorpusFile], run_id: str, staging_uri: str) -> None:
    """Raise ConfigError / SourceError naming every config field or input file that changed since the run
    prepared its work."""
    how = (f"start a new run (give another run.run_id), or delete {staging_uri} to redo run {run_id} from "
           "the start")
    before, now = _flatten(saved.get("fingerprint", {})), _flatten(fingerprint)
    fields = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    if fields:
        raise ConfigError(f"the config changed since run {run_id} prepared its work ({', '.join(fields)}); a resumed "
                          f"run must score exactly what it prepared: {how}")
    for name, saved_files, current in (("query log", saved.get("files", []), files),
                                       ("corpus", saved.get("corpus_files", []), corpus_files)):
        was = {f["uri"]: f for f in saved_files}
        is_ = {f["uri"]: f for f in listing_record(current)}
        changed = sorted(u for u in set(was) | set(is_) if was.get(u) != is_.get(u))
        if changed:
            what = "; ".join(f"{u} {'is gone' if u not in is_ else 'is new' if u not in was else 'changed'}"
                             for u in changed[:5])
            raise SourceError(f"the {name} changed since run {run_id} prepared its work ({what}"
                              f"{' ...' if len(changed) > 5 else ''}): {how}")
