"""What is committed for a run date, whatever the output format: the rows (`read_day`) and a short
description (`describe_day`, for `--dry-run`'s view of the day a run would replace)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa


def _storage(cfg):
    return cfg.output.storage or cfg.queries.storage


def read_day(cfg, run_date: dt.date, snapshot_id: int | None = None) -> pa.Table:
    """The committed rows of `run_date` (Parquet: the parts `_SUCCESS` lists, a SourceError without it;
    Iceberg: the current snapshot, or `snapshot_id` for time travel)."""
    if cfg.output.format == "iceberg":
        from qbatch.connectors.iceberg_tables import IcebergResults

        tables = IcebergResults.existing(cfg.output.catalog, cfg.output.uri, _storage(cfg))
        if tables is None:
            from qbatch.common.errors import SourceError

            raise SourceError(f"no Iceberg results table for output.uri {cfg.output.uri} (output.catalog): "
                              "nothing was committed yet")
        return tables.read_day(run_date, snapshot_id)
    from qbatch.connectors.rerank_table import read_rerank_partition

    return read_rerank_partition(cfg.output.uri, run_date, _storage(cfg))


def describe_day(cfg, run_date: dt.date) -> dict | None:
    """The committed day's run id and size, or None when nothing is committed for it."""
    if cfg.output.format == "iceberg":
        from pyiceberg.expressions import EqualTo

        from qbatch.connectors.iceberg_tables import RUN_DATE_KEY, RUN_ID_KEY, IcebergResults

        results = IcebergResults.existing(cfg.output.catalog, cfg.output.uri, _storage(cfg))
        if results is None:
            return None
        files = list(results.results.scan(row_filter=EqualTo("run_date", run_date.isoformat())).plan_files())
        current = results.results.metadata.current_snapshot()
        day = [s for s in results.results.metadata.snapshots
               if (s.summary.additional_properties or {}).get(RUN_DATE_KEY) == run_date.isoformat()]
        if not day and not files:
            return None
        last = max(day, key=lambda s: s.timestamp_ms) if day else None
        return {"table": results.name, "run_id": last.summary.additional_properties.get(RUN_ID_KEY) if last else None,
                "snapshot_id": last.snapshot_id if last else None, "data_files": len(files),
                "rows": sum(t.file.record_count for t in files),
                "table_snapshot_id": current.snapshot_id if current else None}
    from qbatch.connectors.rerank_table import partition_uri, read_success

    marker = read_success(cfg.output.uri, run_date, _storage(cfg))
    if marker is None:
        return None
    return {"partition": partition_uri(cfg.output.uri, run_date), "run_id": marker.get("run_id"),
            "rows": marker.get("rows"), "parts": len(marker.get("parts") or [])}
