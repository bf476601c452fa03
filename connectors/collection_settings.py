"""Collection settings drift: what the config asks of a live collection's storage and index, against
what was recorded in its metadata when it was created (local mode reports defaults, not what was set,
so the record is the reference).

- Settings Qdrant can change in place (HNSW, quantization, on_disk, write consistency) are applied
  with `update_collection`, recorded, and returned for the run report.
- Settings it cannot change (shards, replication) refuse the run, naming them; a full run rebuilds
  the collection and so takes any setting. Distance and dim are the collection guard's business.
"""

from __future__ import annotations

import logging
from typing import Any

from qdrant_client import QdrantClient
from qdrant_client.http import models

from qbatch.common.errors import ConfigError
from qbatch.connectors.qdrant_config import QdrantConfig

log = logging.getLogger("qbatch.qdrant")

SETTINGS_KEY = "qbatch_settings"  # beside qbatch.connectors.collection_guard.METADATA_KEY in the metadata
CHANGEABLE = ("hnsw_m", "hnsw_ef_construct", "quantization", "on_disk", "write_consistency_factor")
FIXED = ("shard_number", "replication_factor")


def quantization_config(cfg: QdrantConfig) -> models.QuantizationConfig | None:
    # With vectors on disk, the quantized copy is what searches touch first: keep it in RAM.
    always_ram = True if cfg.on_disk else None
    if cfg.quantization == "scalar_int8":
        return models.ScalarQuantization(scalar=models.ScalarQuantizationConfig(
            type=models.ScalarType.INT8, quantile=0.99, always_ram=always_ram))
    if cfg.quantization == "binary":
        return models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=always_ram))
    return None


def requested_settings(cfg: QdrantConfig) -> dict[str, Any]:
    """The settings a collection built from `cfg` has once loaded (bulk loading's m=0 is temporary)."""
    return {name: getattr(cfg, name) for name in (*CHANGEABLE, *FIXED)}


def _live_fixed(info: models.CollectionInfo) -> dict[str, Any]:
    params = info.config.params
    return {"shard_number": params.shard_number or 1, "replication_factor": params.replication_factor or 1}


def recorded_settings(client: QdrantClient, name: str) -> dict[str, Any] | None:
    settings = (client.get_collection(name).config.metadata or {}).get(SETTINGS_KEY)
    return dict(settings) if isinstance(settings, dict) else None


def _apply(client: QdrantClient, cfg: QdrantConfig, name: str, changed: list[str]) -> None:
    kwargs: dict[str, Any] = {}
    if {"hnsw_m", "hnsw_ef_construct"} & set(changed):
        kwargs["hnsw_config"] = models.HnswConfigDiff(m=cfg.hnsw_m, ef_construct=cfg.hnsw_ef_construct)
    if "quantization" in changed:
        kwargs["quantization_config"] = quantization_config(cfg) or models.Disabled.DISABLED
    if "on_disk" in changed:
        kwargs["vectors_config"] = {"": models.VectorParamsDiff(on_disk=cfg.on_disk)}
    if "write_consistency_factor" in changed:
        kwargs["collection_params"] = models.CollectionParamsDiff(write_consistency_factor=cfg.write_consistency_factor)
    client.update_collection(name, **kwargs)


def reconcile_settings(client: QdrantClient, cfg: QdrantConfig, name: str) -> list[str]:
    """Bring live collection `name` to `cfg`'s settings where Qdrant allows it; `field: old -> new` for each
    change applied. Raises ConfigError naming the settings that would need a rebuild."""
    info = client.get_collection(name)
    recorded = recorded_settings(client, name)
    # A collection from before settings were recorded: Qdrant's own figures for what cannot change;
    # the changeable ones are applied once (idempotent) and recorded from then on.
    before = recorded or {**{k: None for k in CHANGEABLE}, **_live_fixed(info)}
    wanted = requested_settings(cfg)
    fixed = [f"qdrant.{k}: {before.get(k)!r} -> {wanted[k]!r}" for k in FIXED if before.get(k) != wanted[k]]
    if fixed:
        raise ConfigError(f"collection {name!r} cannot change {', '.join(k for k in FIXED if before.get(k) != wanted[k])} "
                          f"in place ({'; '.join(fixed)}); run once with run.mode = 'full' to rebuild it with "
                          "the new settings, or restore them in the config")
    changed = [k for k in CHANGEABLE if before.get(k) != wanted[k]]
    if not changed:
        return []
    _apply(client, cfg, name, changed)
    metadata = dict(info.config.metadata or {})
    metadata[SETTINGS_KEY] = wanted
    client.update_collection(name, metadata=metadata)
    applied = [f"qdrant.{k}: {before.get(k)!r} -> {wanted[k]!r}" for k in changed]
    log.info("collection %s settings updated in place: %s", name, "; ".join(applied))
    return applied
