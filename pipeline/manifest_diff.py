"""What a refresh must do to turn the live index into the new corpus, one manifest bucket at a time.

Both sides are manifest rows (doc_id, content_hash, payload_hash, n_chunks), unique per doc_id.
A document is new, deleted, changed (content differs: re-embed, and delete the chunks it lost),
payload_only (same content, new payload: set_payload, no embedding) or unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import pyarrow as pa
import pyarrow.compute as pc

_COLUMNS = ("doc_id", "content_hash", "payload_hash", "n_chunks")


@dataclass(frozen=True)
class DiffSummary:
    """Document and point counts of a diff; every field is a sum, so summaries add up over buckets."""

    new_docs: int = 0
    changed: int = 0
    payload_only: int = 0
    deleted: int = 0
    unchanged: int = 0
    points_to_embed: int = 0  # chunks of new and changed documents
    points_to_delete: int = 0  # all chunks of deleted documents, and the chunks changed ones lost

    def __add__(self, other: "DiffSummary") -> "DiffSummary":
        return DiffSummary(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    @property
    def old_docs(self) -> int:
        return self.changed + self.payload_only + self.deleted + self.unchanged

    @property
    def new_total(self) -> int:
        return self.new_docs + self.changed + self.payload_only + self.unchanged

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class BucketDiff:
    """Per-document outcome of one bucket, each table sorted by doc_id. `deleted` carries the old rows;
    `changed` the new rows plus `old_n_chunks`; the others the new rows."""

    new_docs: pa.Table
    changed: pa.Table
    payload_only: pa.Table
    deleted: pa.Table
    unchanged: pa.Table

    def summary(self) -> DiffSummary:
        lost = pc.max_element_wise(pc.subtract(self.changed["old_n_chunks"], self.changed["n_chunks"]), 0)
        return DiffSummary(
            new_docs=self.new_docs.num_rows, changed=self.changed.num_rows,
            payload_only=self.payload_only.num_rows, deleted=self.deleted.num_rows,
            unchanged=self.unchanged.num_rows,
            points_to_embed=_sum(self.new_docs["n_chunks"]) + _sum(self.changed["n_chunks"]),
            points_to_delete=_sum(self.deleted["n_chunks"]) + _sum(lost))


def _sum(values: pa.ChunkedArray | pa.Array) -> int:
    return int(pc.sum(values).as_py() or 0)


def _manifest_columns(table: pa.Table, side: str) -> pa.Table:
    missing = [c for c in _COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"{side} manifest bucket lacks column(s) {', '.join(missing)}")
    table = table.select(list(_COLUMNS))
    if pc.count_distinct(table["doc_id"]).as_py() != table.num_rows:
        raise ValueError(f"{side} manifest bucket repeats a doc_id; manifests hold each document once")
    return table


def diff_bucket(old: pa.Table | None, new: pa.Table) -> BucketDiff:
    """Classify every document of one bucket of the old (live) and new manifests."""
    new = _manifest_columns(new, "new")
    old = new.schema.empty_table() if old is None else _manifest_columns(old, "old").cast(new.schema)
    joined = old.join(new, keys="doc_id", join_type="full outer", left_suffix="_old", right_suffix="_new",
                      coalesce_keys=True)
    in_old, in_new = pc.is_valid(joined["content_hash_old"]), pc.is_valid(joined["content_hash_new"])
    both = pc.and_(in_old, in_new)
    same_content = pc.fill_null(pc.equal(joined["content_hash_old"], joined["content_hash_new"]), False)
    same_payload = pc.fill_null(pc.equal(joined["payload_hash_old"], joined["payload_hash_new"]), False)

    def side(mask: pa.ChunkedArray, suffix: str) -> pa.Table:
        rows = joined.filter(mask)
        table = pa.table({"doc_id": rows["doc_id"], **{c: rows[f"{c}{suffix}"] for c in _COLUMNS[1:]}},
                         schema=new.schema)
        return table.sort_by("doc_id")

    changed_mask = pc.and_(both, pc.invert(same_content))
    changed = side(changed_mask, "_new")
    old_chunks = joined.filter(changed_mask).sort_by("doc_id")["n_chunks_old"]
    return BucketDiff(
        new_docs=side(pc.invert(in_old), "_new"),
        changed=changed.append_column("old_n_chunks", old_chunks),
        payload_only=side(pc.and_(both, pc.and_(same_content, pc.invert(same_payload))), "_new"),
        deleted=side(pc.invert(in_new), "_old"),
        unchanged=side(pc.and_(both, pc.and_(same_content, same_payload)), "_new"))


def gate_projection(summary: DiffSummary, live_docs: int | None, max_delete_ratio: float,
                    min_ratio: float) -> list[str]:
    """Why applying this diff to a live index of `live_docs` documents looks wrong; empty when it looks fine.
    An empty or unknown live index has nothing to protect."""
    if not live_docs:
        return []
    failures = []
    delete_ratio = summary.deleted / live_docs
    if delete_ratio > max_delete_ratio:
        failures.append(f"the refresh would delete {summary.deleted} of {live_docs} live documents "
                        f"({delete_ratio:.1%}), above max_delete_ratio {max_delete_ratio:.1%}; check the "
                        "source is complete, or raise the limit for this run")
    projected = live_docs - summary.deleted + summary.new_docs
    if projected < min_ratio * live_docs:
        failures.append(f"the index would shrink to {projected} documents from {live_docs} "
                        f"({projected / live_docs:.1%}), below min_ratio {min_ratio:.1%}; check the source "
                        "is complete, or lower the limit for this run")
    return failures


def points_to_delete(diff: BucketDiff) -> list[tuple[str, int]]:
    """(doc_id, chunk) of every point the new manifest no longer has: all chunks of deleted documents,
    and the trailing chunks a changed document lost when it got shorter."""
    out: list[tuple[str, int]] = []
    for doc_id, n in zip(diff.deleted["doc_id"].to_pylist(), diff.deleted["n_chunks"].to_pylist()):
        out.extend((doc_id, c) for c in range(n))
    for doc_id, new_n, old_n in zip(diff.changed["doc_id"].to_pylist(), diff.changed["n_chunks"].to_pylist(),
                                    diff.changed["old_n_chunks"].to_pylist()):
        out.extend((doc_id, c) for c in range(new_n, old_n))
    return out
