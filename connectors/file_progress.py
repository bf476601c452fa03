"""Per-unit completion markers, so a rerun of a crashed run skips the checkpoint units it finished.

A unit is a bounded range of one input file's records (common/end_of_file.py; `run.checkpoint_rows`).
Layout under `{root}/runs/{run_id}/files/` (the index job's root is `{output_uri}/{alias}`), one stem
per unit, `{key}.u{unit:06d}`, where key is sha256[:16] of the file's URI:

    {stem}.manifest.parquet     the unit's manifest rows (MANIFEST_SCHEMA)
    {stem}.dead_letter.parquet  its rejected rows, only when there were any
    {stem}.done.json            {"file": uri, "unit": u, "units": n or null, "counts": {...}}, written LAST
    {stem}.started              empty; written when the unit's first rows are acknowledged, so a resumed
                                run can tell the work a crash left in flight from work never begun

The marker is written only after the data parts, and parts have deterministic names, so a crash
between them leaves an unmarked unit that the next attempt simply redoes; readers only ever look at
parts whose marker exists. A file is done when all its units are: the last unit's marker says how
many the file has.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from qbatch.connectors.object_store import filesystem_for, join_uri, read_bytes, table_to_parquet, write_bytes
from qbatch.connectors.source_config import ObjectStoreOptions

MANIFEST_SCHEMA = pa.schema([
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("content_hash", pa.string(), nullable=False),
    pa.field("payload_hash", pa.string(), nullable=False),
    pa.field("n_chunks", pa.int32(), nullable=False),
])

_DONE, _MANIFEST, _DEAD, _STARTED = ".done.json", ".manifest.parquet", ".dead_letter.parquet", ".started"
_MARKER_READERS = 16  # markers are tiny; on an object store reading them is all latency


def conform_manifest(table: pa.Table) -> pa.Table:
    """The table's manifest columns, in MANIFEST_SCHEMA order and types; ValueError naming a missing one."""
    missing = [name for name in MANIFEST_SCHEMA.names if name not in table.column_names]
    if missing:
        raise ValueError(f"manifest rows lack column(s) {', '.join(missing)}; have {table.column_names}")
    return table.select(MANIFEST_SCHEMA.names).cast(MANIFEST_SCHEMA)


def file_key(file_uri: str) -> str:
    """The stable, path-safe key of an input file."""
    return hashlib.sha256(file_uri.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def unit_stem(file_uri: str, unit: int) -> str:
    """The stable, path-safe name of one checkpoint unit of an input file."""
    return f"{file_key(file_uri)}.u{int(unit):06d}"


def sum_counts(counts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Add up per-unit counts: numbers add, and so do the `rejected` reason -> count maps."""
    total: dict[str, Any] = {}
    for c in counts:
        for k, v in c.items():
            if isinstance(v, dict):
                merged = total.setdefault(k, {})
                for reason, n in v.items():
                    merged[reason] = merged.get(reason, 0) + int(n)
            else:
                total[k] = total.get(k, 0) + v
    return total


class FileProgressStore:
    """Completion markers and per-file outputs of one run."""

    def __init__(self, output_uri: str, run_id: str, storage: ObjectStoreOptions | None = None):
        self.uri = join_uri(output_uri, "runs", run_id, "files")
        self._storage = storage
        self._fs, self._path = filesystem_for(self.uri, storage)

    file_key = staticmethod(file_key)

    def mark_done(self, file_uri: str, counts: dict[str, Any], manifest_rows: pa.Table,
                  dead_letter_rows: pa.Table | None = None, unit: int = 0, units: int | None = 1) -> str:
        """Write unit `unit`'s parts, then its marker; returns the unit's stem. Redoing a unit replaces its
        parts. `units` is the file's unit count, given with its last unit (a one-unit file by default)."""
        key = unit_stem(file_uri, unit)
        write_bytes(self._uri(key, _MANIFEST), table_to_parquet(conform_manifest(manifest_rows)), self._storage)
        if dead_letter_rows is not None and dead_letter_rows.num_rows:
            write_bytes(self._uri(key, _DEAD), table_to_parquet(dead_letter_rows), self._storage)
        else:
            self._delete_if_present(key, _DEAD)  # an earlier attempt's rejects must not come back
        marker = json.dumps({"file": file_uri, "unit": unit, "units": units, "counts": counts}, sort_keys=True).encode()
        write_bytes(self._uri(key, _DONE), marker, self._storage)
        return key

    def mark_started(self, file_uri: str, unit: int = 0) -> None:
        write_bytes(self._uri(unit_stem(file_uri, unit), _STARTED), b"", self._storage)

    def started_keys(self) -> set[str]:
        """Stems of units whose rows began to land in some attempt (done or not)."""
        return {info.base_name[:-len(_STARTED)] for info in self._list() if info.base_name.endswith(_STARTED)}

    def done_units(self) -> dict[str, dict[int, dict[str, Any]]]:
        """file URI -> {unit: its marker}, for every unit with a marker. One small read per unit."""
        uris = [self._uri(key, _DONE) for key in self._done_keys()]
        with ThreadPoolExecutor(max_workers=_MARKER_READERS) as pool:
            markers = list(pool.map(lambda uri: read_bytes(uri, self._storage), uris))
        done: dict[str, dict[int, dict[str, Any]]] = {}
        for data in markers:
            if data is not None:  # cleared between listing and reading
                marker = json.loads(data)
                done.setdefault(marker["file"], {})[int(marker.get("unit", 0))] = marker
        return done

    def done_files(self, units_done: dict[str, dict[int, dict[str, Any]]] | None = None) -> dict[str, dict[str, Any]]:
        """file URI -> counts summed over its units, for every file whose units are all done; from
        `units_done` (a `done_units()` result) when given, so the markers are read once."""
        done: dict[str, dict[str, Any]] = {}
        for uri, units in sorted((self.done_units() if units_done is None else units_done).items()):
            total = next((m["units"] for m in units.values() if m.get("units") is not None), None)
            if total is None or any(u not in units for u in range(int(total))):
                continue  # some unit is still to do
            done[uri] = sum_counts(m["counts"] for m in units.values())
        return done

    def iter_manifest_rows(self, batch_rows: int = 65_536) -> Iterator[pa.Table]:
        """The manifest rows of every done file, streamed in tables of at most `batch_rows` rows."""
        yield from self._iter_parts(_MANIFEST, batch_rows)

    def iter_dead_letter(self, batch_rows: int = 65_536) -> Iterator[pa.Table]:
        """The rejected rows of every done file, streamed like iter_manifest_rows."""
        yield from self._iter_parts(_DEAD, batch_rows)

    def clear(self) -> None:
        """Forget all progress of this run (markers first, so a half-done clear never looks done)."""
        for key in self._done_keys():
            self._delete_if_present(key, _DONE)
        if self._fs.get_file_info(self._path).type != pafs.FileType.NotFound:
            self._fs.delete_dir(self._path)

    def _iter_parts(self, suffix: str, batch_rows: int) -> Iterator[pa.Table]:
        names = {info.base_name for info in self._list()}
        for key in self._done_keys():
            if key + suffix not in names:
                continue  # a done file without rejects has no dead-letter part
            with self._fs.open_input_file(f"{self._path}/{key}{suffix}") as f:
                for batch in pq.ParquetFile(f).iter_batches(batch_size=batch_rows):
                    yield pa.Table.from_batches([batch])

    def _done_keys(self) -> list[str]:
        return sorted(info.base_name[:-len(_DONE)] for info in self._list() if info.base_name.endswith(_DONE))

    def _list(self) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(self._path, allow_not_found=True)
        return [info for info in self._fs.get_file_info(selector) if info.type == pafs.FileType.File]

    def _uri(self, key: str, suffix: str) -> str:
        return join_uri(self.uri, key + suffix)

    def _delete_if_present(self, key: str, suffix: str) -> None:
        path = f"{self._path}/{key}{suffix}"
        if self._fs.get_file_info(path).type != pafs.FileType.NotFound:
            self._fs.delete_file(path)
