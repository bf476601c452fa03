"""The collection guard: a collection records how its vectors were made (model, revision, instructions,
chunking, dim, distance) in its Qdrant metadata, and a run that would make them differently is refused
before the first row is embedded. Mixing two models' vectors in one collection gives plausible but
meaningless search results, and nothing downstream could tell."""

from __future__ import annotations

import json
import warnings
from typing import Any, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from qdrant_client import QdrantClient
from qdrant_client.http import models

from qbatch.common.errors import ConfigError, GateFailedError
from qbatch.connectors.collection_settings import SETTINGS_KEY, quantization_config, requested_settings
from qbatch.connectors.qdrant_config import QdrantConfig

# Key under the collection metadata, so other tools can keep their own entries next to ours.
METADATA_KEY = "qbatch"
# Recorded for people reading the metadata, never compared: upgrading qbatch must not lock collections,
# and bf16 and fp32 vectors of one model differ by rounding only (cosine >= 0.999), so machines with and
# without native bf16 keep writing to the same collections.
INFORMATIONAL_FIELDS = frozenset({"qbatch_version", "run_id", "created_at", "precision"})

_DISTANCES = {"cosine": models.Distance.COSINE, "dot": models.Distance.DOT, "euclid": models.Distance.EUCLID}


class CollectionSpec(BaseModel):
    """How the vectors of a collection are made; two runs may share a collection only if these match."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dim: int = Field(..., ge=1, le=65536, description="vector size after any MRL slicing")
    distance: Literal["cosine", "dot", "euclid"] = Field(..., description="vector distance")
    fingerprint: dict[str, Any] = Field(
        default_factory=dict,
        description="model, model_revision (revision or weights hash), instructions, chunking, max_length, "
                    "qbatch_version: anything that changes the vectors; JSON values only")

    @field_validator("fingerprint")
    @classmethod
    def _json_fingerprint(cls, v: dict[str, Any]) -> dict[str, Any]:
        clash = {"dim", "distance"} & set(v)
        if clash:
            raise ValueError(f"fingerprint must not repeat {sorted(clash)}: they are fields of the spec itself")
        # Qdrant stores metadata as JSON, so compare in JSON terms: a tuple read back is a list.
        try:
            return json.loads(json.dumps(v, sort_keys=True))
        except (TypeError, ValueError) as e:
            raise ValueError(f"fingerprint must hold JSON values only: {e}") from None

    @classmethod
    def build(cls, *, dim: int, distance: Literal["cosine", "dot", "euclid"], model: str, model_revision: str,
              instructions: dict[str, str], chunking: dict[str, Any], max_length: int,
              qbatch_version: str) -> "CollectionSpec":
        """A spec with the fingerprint fields every qbatch index run records."""
        return cls(dim=dim, distance=distance, fingerprint={
            "model": model, "model_revision": model_revision, "instructions": dict(instructions),
            "chunking": dict(chunking), "max_length": max_length, "qbatch_version": qbatch_version})

    def as_metadata(self) -> dict[str, Any]:
        return {"dim": self.dim, "distance": self.distance, **self.fingerprint}


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def spec_differences(existing: dict[str, Any], requested: dict[str, Any]) -> list[str]:
    """`field: existing -> requested` for each compared field that differs (nested keys dotted)."""
    old, new = _flatten(existing), _flatten(requested)
    diffs = []
    for key in sorted(set(old) | set(new)):
        if key.split(".", 1)[0] in INFORMATIONAL_FIELDS:
            continue
        a, b = old.get(key, "<unset>"), new.get(key, "<unset>")
        if a != b:
            diffs.append(f"{key}: {a!r} -> {b!r}")
    return diffs


def _recorded(info: models.CollectionInfo) -> dict[str, Any] | None:
    spec = (info.config.metadata or {}).get(METADATA_KEY)
    return dict(spec) if isinstance(spec, dict) else None


def read_spec(client: QdrantClient, name: str) -> dict[str, Any] | None:
    """The spec recorded in collection (or alias) `name`, or None when it is missing or has none."""
    if not client.collection_exists(name):
        return None
    return _recorded(client.get_collection(name))


def record_precisions(client: QdrantClient, name: str, precisions: Iterable[str]) -> list[str]:
    """Add the dtypes a run embedded in to the `precision` list recorded on collection `name`
    (informational, never compared); returns the list now recorded."""
    recorded = read_spec(client, name)
    if recorded is None:  # not a qbatch collection: nothing to add to
        return []
    merged = sorted(set(recorded.get("precision") or []) | set(precisions))
    if merged != recorded.get("precision"):
        # Qdrant merges metadata by top-level key: the whole qbatch entry is rewritten, other keys stay.
        client.update_collection(name, metadata={METADATA_KEY: {**recorded, "precision": merged}})
    return merged


def _live_vectors(info: models.CollectionInfo) -> dict[str, Any]:
    vectors = info.config.params.vectors
    if isinstance(vectors, models.VectorParams):
        return {"dim": vectors.size, "distance": vectors.distance.value.lower()}
    # Named vectors: not a layout qbatch writes, so not one it may append to.
    return {"dim": f"named vectors {sorted((vectors or {}).keys())}"}


def _check_existing(client: QdrantClient, name: str, spec: CollectionSpec) -> None:
    info = client.get_collection(name)
    recorded = _recorded(info)
    # The live vector params override the metadata: they are what Qdrant actually enforces.
    diffs = spec_differences({**(recorded or {}), **_live_vectors(info)}, spec.as_metadata())
    if recorded is None:
        raise GateFailedError(
            f"collection {name!r} exists but carries no qbatch spec (metadata key {METADATA_KEY!r}), so "
            f"its vectors cannot be checked against this run ({'; '.join(diffs)}). "
            "Index into a new collection name instead.")
    if diffs:
        raise GateFailedError(
            f"collection {name!r} was built differently from this run; refusing to mix vectors. Differences "
            f"(field: existing -> requested): {'; '.join(diffs)}. "
            "Use a new collection name, or restore the settings it was built with.")


def _ensure_payload_indexes(client: QdrantClient, cfg: QdrantConfig, name: str) -> None:
    # Indexes exist before the first point lands, so the server builds them as it loads instead of
    # rescanning everything afterwards. Local mode accepts them but keeps payload_schema empty.
    present = client.get_collection(name).payload_schema or {}
    with warnings.catch_warnings():
        # qdrant-client warns on every call in local mode, where indexes have no effect (the README says
        # so); the calls still go out, so a laptop run does what a server run does.
        warnings.filterwarnings("ignore", message="Payload indexes have no effect in the local Qdrant")
        for field, kind in sorted(cfg.payload_indexes.items()):
            if field not in present:
                client.create_payload_index(name, field_name=field, field_schema=models.PayloadSchemaType(kind),
                                            wait=True)


def ensure_collection(client: QdrantClient, cfg: QdrantConfig, name: str, spec: CollectionSpec,
                      bulk_load: bool = False) -> bool:
    """Create collection `name` for `spec`, or check that the existing one matches it. True if created.

    bulk_load=True builds no HNSW graph while loading (m=0); call finish_bulk_load afterwards."""
    if cfg.distance != spec.distance:
        raise ConfigError(f"qdrant.distance is {cfg.distance!r} but the collection spec says {spec.distance!r}")
    if client.collection_exists(name):
        _check_existing(client, name, spec)
        _ensure_payload_indexes(client, cfg, name)
        return False
    try:
        client.create_collection(
            name,
            vectors_config=models.VectorParams(size=spec.dim, distance=_DISTANCES[spec.distance], on_disk=cfg.on_disk),
            hnsw_config=models.HnswConfigDiff(m=0 if bulk_load else cfg.hnsw_m, ef_construct=cfg.hnsw_ef_construct),
            quantization_config=quantization_config(cfg),
            shard_number=cfg.shard_number,
            replication_factor=cfg.replication_factor,
            write_consistency_factor=cfg.write_consistency_factor,
            # The spec goes in with the create call itself, so no collection ever exists without it; the
            # settings are recorded because local mode reports defaults (connectors/collection_settings.py).
            metadata={METADATA_KEY: spec.as_metadata(), SETTINGS_KEY: requested_settings(cfg)},
        )
    except Exception:
        # Another run may have created it between our check and our call: then judge it like any
        # existing collection; otherwise the error is real.
        if not client.collection_exists(name):
            raise
        _check_existing(client, name, spec)
        _ensure_payload_indexes(client, cfg, name)
        return False
    _ensure_payload_indexes(client, cfg, name)
    return True


def finish_bulk_load(client: QdrantClient, cfg: QdrantConfig, name: str) -> None:
    """Turn the HNSW graph on after a bulk load (a no-op in local mode, which has no HNSW)."""
    client.update_collection(name, hnsw_config=models.HnswConfigDiff(m=cfg.hnsw_m, ef_construct=cfg.hnsw_ef_construct))
