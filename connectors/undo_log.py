"""The undo log of an in-place run: before-images of the live points it overwrites or deletes, saved
as Parquet under `{run folder}/undo/` before the write they protect, so a failed post-write gate or
`qbatch index rollback` can put the live collection back point for point.

- Before-images are captured where the writes happen (PointWriter calls `capture` before each upsert,
  set_payload and delete request), so they follow the writes wherever those run.
- A point that already carries this run's `run_id` was written by this run (an earlier attempt,
  before a crash): its before-image, if it had one, was saved before that write, so it is never
  saved again.
- Points the run added have no before-image. `restore` finds them by their `run_id` payload, not by
  a set held in memory, and deletes them after putting the before-images back.
- Restored means equal payloads and vectors within float tolerance: Qdrant renormalises cosine
  vectors on upsert, so a restore cannot be bit for bit.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from qbatch.connectors.object_store import filesystem_for, join_uri, table_to_parquet, write_bytes
from qbatch.connectors.source_config import ObjectStoreOptions

UNDO_SCHEMA = pa.schema([("point_id", pa.string()), ("vector", pa.list_(pa.float32())),
                         ("payload_json", pa.string())])
RUN_ID_FIELD = "run_id"


@dataclass
class UndoResult:
    restored_points: int = 0  # before-images put back
    removed_points: int = 0  # points the run had added


def run_filter(run_id: str):
    from qdrant_client.http import models

    return models.Filter(must=[models.FieldCondition(key=RUN_ID_FIELD, match=models.MatchValue(value=run_id))])


class UndoLog:
    """`capture(client, ids)` before writing `ids`; `restore(client)` to undo the run."""

    def __init__(self, run_folder: str, collection: str, run_id: str, storage: ObjectStoreOptions | None = None):
        self.run_folder, self.uri = run_folder, join_uri(run_folder, "undo")
        self.collection, self.run_id, self._storage = collection, run_id, storage
        self._prefix = uuid.uuid4().hex[:12]  # parts of different attempts never collide
        self._parts = 0
        self.captured = 0  # before-images this attempt saved

    def capture(self, client, ids: list[str]) -> int:
        """Save the before-images of those `ids` that exist and were not written by this run yet."""
        if not ids:
            return 0
        points = client.retrieve(self.collection, ids=list(dict.fromkeys(ids)), with_vectors=True,
                                 with_payload=True)
        before = [p for p in points if (p.payload or {}).get(RUN_ID_FIELD) != self.run_id]
        if not before:
            return 0
        table = pa.table({
            "point_id": [str(p.id) for p in before],
            "vector": pa.array([np.asarray(p.vector, np.float32) for p in before], pa.list_(pa.float32())),
            "payload_json": [json.dumps(p.payload or {}, sort_keys=True) for p in before],
        }, schema=UNDO_SCHEMA)
        self._parts += 1
        write_bytes(join_uri(self.uri, f"part-{self._prefix}-{self._parts:06d}.parquet"), table_to_parquet(table),
                    self._storage)
        self.captured += len(before)
        return len(before)

    def part_uris(self) -> list[str]:
        fs, path = filesystem_for(self.uri, self._storage)
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        names = sorted(i.base_name for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(".parquet"))
        return [join_uri(self.uri, n) for n in names]

    def iter_before_images(self):
        """Tables of UNDO_SCHEMA, one per saved part, oldest attempt's parts in name order."""
        for uri in self.part_uris():
            fs, path = filesystem_for(uri, self._storage)
            with fs.open_input_file(path) as f:
                yield pq.read_table(f, schema=UNDO_SCHEMA)

    def has_writes(self, client) -> bool:
        """Whether this run (any attempt) changed the collection: a saved before-image, or a point with its id."""
        if self.part_uris():
            return True
        return client.count(self.collection, count_filter=run_filter(self.run_id), exact=True).count > 0

    def restore(self, client, writer) -> UndoResult:
        """Put every before-image back through `writer` (a PointWriter without an undo log), then delete
        the points still carrying this run's id: the ones it added. Idempotent: safe to run again."""
        result = UndoResult()
        for table in self.iter_before_images():
            ids = table["point_id"].to_pylist()
            vectors = np.asarray(table["vector"].to_pylist(), np.float32).reshape(len(ids), -1)
            payloads = [json.loads(p) for p in table["payload_json"].to_pylist()]
            writer.write(ids, vectors, payloads)
            result.restored_points += len(ids)
        writer.flush()
        added = client.count(self.collection, count_filter=run_filter(self.run_id), exact=True).count
        if added:
            writer.delete_where(run_filter(self.run_id), f"delete of the {added} points run {self.run_id} added")
        result.removed_points = added
        return result
