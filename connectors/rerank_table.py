"""The rerank result table in Parquet: partitions `{uri}/run_date=YYYY-MM-DD/part-*.parquet`, on local
disk or an object store, each committed with a `_SUCCESS` marker that lists its parts; the run date's
dead letters beside it, under `{uri}/_dead_letter/run_date=YYYY-MM-DD/`.

Workers write a run's parts into its staging folder (connectors/rerank_staging.py); `publish` takes the
acknowledged part names only, never a listing (a retried task may have left a part nobody
acknowledged), and replaces the day:
- local disk: the parts are moved into a staged folder that already holds `_SUCCESS`, then two renames
  swap it for the old partition, so a reader sees the old day, briefly no day, or the new day, never a
  mix and never a day without its marker;
- object stores (no rename): `_SUCCESS` is deleted, the parts are copied in, the old day's parts that
  its marker lists are deleted, and `_SUCCESS` is written last; readers that check the marker see no
  day meanwhile, and `read_rerank_partition` reads exactly the parts the marker lists.
Every step can be repeated: a commit killed anywhere is finished by the next attempt of the run.

Test-only fault injection, never set in production (labelled FAULT INJECTION):
QBATCH_TEST_RERANK_KILL_IN_COMMIT=FLAG SIGKILLs the process after the parts are moved into place and
before `_SUCCESS` is written, if FLAG exists (it deletes FLAG first).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from qbatch.common.errors import SourceError
from qbatch.common.rerank_result_schema import RERANK_SCHEMA
from qbatch.connectors.object_store import filesystem_for, join_uri, read_bytes, storage_error, write_bytes
from qbatch.connectors.source_config import ObjectStoreOptions

SUCCESS = "_SUCCESS"
DEAD_LETTER_MARKER = "_PARTS.json"
_KILL_IN_COMMIT_ENV = "QBATCH_TEST_RERANK_KILL_IN_COMMIT"


def partition_uri(uri: str, run_date: dt.date) -> str:
    return join_uri(uri, f"run_date={run_date.isoformat()}")


def dead_letter_partition_uri(uri: str, run_date: dt.date) -> str:
    return join_uri(uri, "_dead_letter", f"run_date={run_date.isoformat()}")


def published_name(rel: str) -> str:
    """A staged part's name in the published folder: `results/prep-x.parquet` -> `part-prep-x.parquet`."""
    return "part-" + rel.rsplit("/", 1)[-1]


class FolderSwap:
    """Replace one published folder with a set of staged parts, by name, repeatably."""

    def __init__(self, final_uri: str, staging, publish_rel: str, storage: ObjectStoreOptions | None,
                 fault_point: bool = False):
        self.final_uri, self.staging, self.publish_rel, self.storage = final_uri, staging, publish_rel, storage
        self.fault_point = fault_point  # the result partition's publish is where the test kill fires
        self.fs, self.final = filesystem_for(final_uri, storage)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)

    def publish(self, parts: list[str], marker_name: str, marker: dict) -> None:
        marker = {**marker, "parts": [published_name(p) for p in parts]}
        try:
            if self._published(marker_name, marker):
                return  # an earlier attempt of this run finished this publish
            if self.local:
                self._local(parts, marker_name, marker)
            else:
                self._object_store(parts, marker_name, marker)
        except OSError as e:
            raise storage_error("publish", self.final_uri, e, self.storage) from None

    def _published(self, marker_name: str, marker: dict) -> bool:
        data = read_bytes(join_uri(self.final_uri, marker_name), self.storage)
        old = json.loads(data) if data else {}
        return all(old.get(k) == marker[k] for k in ("run_id", "prepared", "parts"))

    def _local(self, parts: list[str], marker_name: str, marker: dict) -> None:
        _, publish = filesystem_for(self.staging.uri(self.publish_rel), self.storage)
        os.makedirs(publish, exist_ok=True)
        for rel in parts:
            _, src = filesystem_for(self.staging.uri(rel), self.storage)
            dst = os.path.join(publish, published_name(rel))
            if os.path.exists(src):
                os.replace(src, dst)
            elif not os.path.exists(dst):
                raise RuntimeError(f"acknowledged part {self.staging.uri(rel)} is missing")
        if not os.path.exists(os.path.join(publish, marker_name)):
            self._fault()
            write_bytes(os.path.join(publish, marker_name), json.dumps(marker).encode())
        replaced = publish.rstrip("/") + ".replaced"
        if os.path.isdir(replaced):
            _rmtree(replaced)
        os.makedirs(os.path.dirname(self.final), exist_ok=True)
        if os.path.isdir(self.final):
            os.rename(self.final, replaced)  # the old day leaves ...
        os.rename(publish, self.final)  # ... and the new one, with its marker, arrives: two renames apart
        if os.path.isdir(replaced):
            _rmtree(replaced)

    def _object_store(self, parts: list[str], marker_name: str, marker: dict) -> None:
        old = read_bytes(join_uri(self.final_uri, marker_name), self.storage)
        old_parts = json.loads(old).get("parts") if old else None
        if old is not None:
            self.fs.delete_file(f"{self.final}/{marker_name}")
        for rel in parts:
            _, src = filesystem_for(self.staging.uri(rel), self.storage)
            dst = f"{self.final}/{published_name(rel)}"
            if self.fs.get_file_info(src).type == pafs.FileType.File:
                self.fs.copy_file(src, dst)
            elif self.fs.get_file_info(dst).type != pafs.FileType.File:
                raise RuntimeError(f"acknowledged part {self.staging.uri(rel)} is missing")
        keep = set(marker["parts"])
        if old_parts is None:  # a day committed before markers listed their parts
            infos = self.fs.get_file_info(pafs.FileSelector(self.final, allow_not_found=True))
            old_parts = [i.path.rsplit("/", 1)[-1] for i in infos if i.path.endswith(".parquet")]
        for name in old_parts:
            if name not in keep and self.fs.get_file_info(f"{self.final}/{name}").type == pafs.FileType.File:
                self.fs.delete_file(f"{self.final}/{name}")
        self._fault()
        write_bytes(join_uri(self.final_uri, marker_name), json.dumps(marker).encode(), self.storage)

    def _fault(self) -> None:
        flag = os.environ.get(_KILL_IN_COMMIT_ENV) if self.fault_point else None
        if flag and os.path.exists(flag):
            os.remove(flag)
            os.kill(os.getpid(), signal.SIGKILL)  # FAULT INJECTION: between moving parts and writing the marker


def _rmtree(path: str) -> None:
    pafs.LocalFileSystem().delete_dir(path)


def publish_dead_letters(uri: str, run_date: dt.date, run_id: str, prepared: str, staging, parts: list[str],
                         storage: ObjectStoreOptions | None = None) -> str:
    """Replace the run date's dead letters with the run's acknowledged dead-letter parts. `prepared` is
    the token of the run's prepare phase: a later attempt of the same run id that prepared afresh
    publishes again, one that only resumes finds its publish done."""
    final = dead_letter_partition_uri(uri, run_date)
    FolderSwap(final, staging, "publish-dead-letters", storage).publish(
        parts, DEAD_LETTER_MARKER, {"run_id": run_id, "prepared": prepared})
    return final


def publish_partition(uri: str, run_date: dt.date, run_id: str, prepared: str, staging, parts: list[str],
                      rows: int, storage: ObjectStoreOptions | None = None) -> str:
    """Replace the run date's partition with the run's acknowledged result parts; returns its URI."""
    final = partition_uri(uri, run_date)
    marker = {"run_id": run_id, "prepared": prepared, "rows": int(rows),
              "committed_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    FolderSwap(final, staging, "publish", storage, fault_point=True).publish(parts, SUCCESS, marker)
    return final


def read_success(uri: str, run_date: dt.date, storage: ObjectStoreOptions | None = None) -> dict | None:
    data = read_bytes(join_uri(partition_uri(uri, run_date), SUCCESS), storage)
    return None if data is None else json.loads(data)


def read_rerank_partition(uri: str, run_date: dt.date, storage: ObjectStoreOptions | None = None) -> pa.Table:
    """The committed rows of one run date (the parts its marker lists); SourceError when the partition
    has no `_SUCCESS` marker."""
    marker = read_success(uri, run_date, storage)
    if marker is None:
        raise SourceError(f"{partition_uri(uri, run_date)} is not committed (no {SUCCESS}): its run failed or "
                          "is still writing; rerun that day")
    fs, base = filesystem_for(partition_uri(uri, run_date), storage)
    names = marker.get("parts")
    if names is None:  # committed before markers listed their parts
        infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
        names = sorted(i.path.rsplit("/", 1)[-1] for i in infos if i.path.endswith(".parquet"))
    if not names:
        return RERANK_SCHEMA.empty_table()
    return pa.concat_tables([pq.read_table(f"{base}/{n}", filesystem=fs, schema=RERANK_SCHEMA) for n in sorted(names)])
