"""The manifest of a collection: one row per document (MANIFEST_SCHEMA) saying what was embedded, so
the next night's refresh can diff the corpus against it bucket by bucket instead of in one piece.

    {output_uri}/{alias}/manifests/CURRENT                          text: the live collection's name
    {output_uri}/{alias}/manifests/{collection}/bucket-0000.parquet rows with bucket_of(doc_id) == 0,
    ...                                                             sorted by doc_id
    {output_uri}/{alias}/manifests/{collection}/_SUCCESS            JSON: n_buckets, docs, points

A manifest without _SUCCESS is incomplete and never read. Buckets are a stable hash of the doc id,
so two manifests with the same n_buckets put a document in the same bucket and diff pairwise.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from qbatch.connectors.bucket_spill import BucketSpill, bucket_ids, bucket_of  # noqa: F401 - re-exported
from qbatch.connectors.file_progress import MANIFEST_SCHEMA, conform_manifest
from qbatch.connectors.object_store import filesystem_for, join_uri, read_bytes, table_to_parquet, write_bytes
from qbatch.connectors.source_config import ObjectStoreOptions

SUCCESS = "_SUCCESS"


def manifests_uri(output_uri: str, alias: str) -> str:
    """The folder holding all manifests of an alias and its CURRENT pointer."""
    return join_uri(output_uri, alias, "manifests")


def manifest_uri(output_uri: str, alias: str, collection: str) -> str:
    """The folder of one collection's manifest."""
    return join_uri(manifests_uri(output_uri, alias), collection)


def bucket_name(i: int) -> str:
    return f"bucket-{i:04d}.parquet"


class ManifestWriter:
    """Streams manifest rows to per-bucket spill files on local disk, then publishes them on commit()."""

    def __init__(self, output_uri: str, alias: str, collection: str, n_buckets: int = 64,
                 storage: ObjectStoreOptions | None = None, spill_dir: str | None = None):
        if n_buckets < 1:
            raise ValueError(f"n_buckets must be at least 1, got {n_buckets}")
        self.uri = manifest_uri(output_uri, alias, collection)
        self.n_buckets = n_buckets
        self._storage = storage
        self._spill = BucketSpill(MANIFEST_SCHEMA, n_buckets, directory=spill_dir)

    def add(self, table: pa.Table) -> None:
        """Append manifest rows; memory stays at one input table, whatever the corpus size."""
        self._spill.add(conform_manifest(table))

    def commit(self) -> dict[str, Any]:
        """Write every bucket (sorted by doc_id, one in memory at a time), then _SUCCESS; the summary."""
        fs, path = filesystem_for(self.uri, self._storage)
        if fs.get_file_info(f"{path}/{SUCCESS}").type != pafs.FileType.NotFound:
            fs.delete_file(f"{path}/{SUCCESS}")  # a rewrite must not look complete halfway through
        docs = points = 0
        for i in range(self.n_buckets):
            bucket = self._spill.read(i).sort_by("doc_id")
            _refuse_duplicates(bucket, i)
            write_bytes(join_uri(self.uri, bucket_name(i)), table_to_parquet(bucket), self._storage)
            docs += bucket.num_rows
            points += int(pc.sum(bucket.column("n_chunks")).as_py() or 0)
        summary = {"n_buckets": self.n_buckets, "docs": docs, "points": points,
                   "committed_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        write_bytes(join_uri(self.uri, SUCCESS), json.dumps(summary, indent=1).encode(), self._storage)
        self.close()
        return summary

    def close(self) -> None:
        """Drop the spill files; a manifest not committed by now is abandoned."""
        self._spill.close()

    def __enter__(self) -> "ManifestWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _refuse_duplicates(sorted_bucket: pa.Table, i: int) -> None:
    ids = sorted_bucket.column("doc_id")
    if len(ids) < 2:
        return
    same = pc.equal(ids.slice(1), ids.slice(0, len(ids) - 1))
    if pc.any(same).as_py():
        first = int(np.flatnonzero(same.to_numpy(zero_copy_only=False))[0])
        raise ValueError(f"manifest bucket {i} holds doc_id {ids[first].as_py()!r} twice; every document "
                         "may appear once per manifest")


class ManifestReader:
    """Reads a committed manifest; everything but exists() refuses one without _SUCCESS."""

    def __init__(self, output_uri: str, alias: str, collection: str, storage: ObjectStoreOptions | None = None):
        self.uri = manifest_uri(output_uri, alias, collection)
        self._storage = storage
        self._summary: dict[str, Any] | None = None

    def exists(self) -> bool:
        return read_bytes(join_uri(self.uri, SUCCESS), self._storage) is not None

    def summary(self) -> dict[str, Any]:
        """The _SUCCESS record: n_buckets, docs, points, committed_at."""
        if self._summary is None:
            data = read_bytes(join_uri(self.uri, SUCCESS), self._storage)
            if data is None:
                raise FileNotFoundError(f"no committed manifest at {self.uri} (no {SUCCESS})")
            self._summary = json.loads(data)
        return self._summary

    @property
    def n_buckets(self) -> int:
        return int(self.summary()["n_buckets"])

    def read_bucket(self, i: int) -> pa.Table:
        """Bucket i's rows, sorted by doc_id."""
        if not 0 <= i < self.n_buckets:
            raise IndexError(f"bucket {i} out of range for {self.uri} ({self.n_buckets} buckets)")
        fs, path = filesystem_for(join_uri(self.uri, bucket_name(i)), self._storage)
        with fs.open_input_file(path) as f:
            return pq.read_table(f, schema=MANIFEST_SCHEMA)


def current_uri(output_uri: str, alias: str) -> str:
    return join_uri(manifests_uri(output_uri, alias), "CURRENT")


def read_current(output_uri: str, alias: str, storage: ObjectStoreOptions | None = None) -> str | None:
    """The collection whose manifest describes what the alias serves, or None before the first run."""
    data = read_bytes(current_uri(output_uri, alias), storage)
    if data is None:
        return None
    return data.decode().strip() or None


def write_current(output_uri: str, alias: str, collection: str, storage: ObjectStoreOptions | None = None) -> None:
    """Point CURRENT at a collection whose manifest is committed; refuses one that is not."""
    if not ManifestReader(output_uri, alias, collection, storage).exists():
        raise FileNotFoundError(f"cannot point {current_uri(output_uri, alias)} at {collection!r}: "
                                f"its manifest has no {SUCCESS}; commit it first")
    write_bytes(current_uri(output_uri, alias), f"{collection}\n".encode(), storage)


def adopt_legacy_manifest(output_uri: str, legacy_uri: str, alias: str,
                          storage: ObjectStoreOptions | None = None) -> str | None:
    """When `output_uri` has no CURRENT manifest for `alias` but `legacy_uri` has one, copy that manifest
    (buckets first, _SUCCESS last) and CURRENT to `output_uri`; returns the collection adopted, or None.
    The legacy copy is left as it was, so an older qbatch pointed at it keeps working."""
    if read_current(output_uri, alias, storage) is not None:
        return None
    key = read_current(legacy_uri, alias, storage)
    if key is None:
        return None
    source = ManifestReader(legacy_uri, alias, key, storage)
    target = manifest_uri(output_uri, alias, key)
    for i in range(source.n_buckets):
        data = read_bytes(join_uri(source.uri, bucket_name(i)), storage)
        if data is None:
            raise FileNotFoundError(f"legacy manifest {source.uri} lacks {bucket_name(i)}")
        write_bytes(join_uri(target, bucket_name(i)), data, storage)
    write_bytes(join_uri(target, SUCCESS), json.dumps(source.summary(), indent=1).encode(), storage)
    write_current(output_uri, alias, key, storage)
    return key


def list_manifests(output_uri: str, alias: str, storage: ObjectStoreOptions | None = None) -> list[str]:
    """Collections that have a manifest folder (committed or not), sorted; for cleaning up."""
    fs, path = filesystem_for(manifests_uri(output_uri, alias), storage)
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return sorted(info.base_name for info in infos if info.type == pafs.FileType.Directory)


def delete_manifest(output_uri: str, alias: str, collection: str, storage: ObjectStoreOptions | None = None) -> None:
    """Remove a dropped collection's manifest (_SUCCESS first); the CURRENT one is refused."""
    if read_current(output_uri, alias, storage) == collection:
        raise ValueError(f"refusing to delete the manifest of {collection!r}: CURRENT points at it")
    fs, path = filesystem_for(manifest_uri(output_uri, alias, collection), storage)
    if fs.get_file_info(f"{path}/{SUCCESS}").type != pafs.FileType.NotFound:
        fs.delete_file(f"{path}/{SUCCESS}")
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_dir(path)
