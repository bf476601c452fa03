"""Blue/green helpers: each nightly build writes a fresh collection `{alias}__{stamp}` and, once its
gates pass, the alias moves to it in one atomic request; readers never see a half-built index."""

from __future__ import annotations

from qdrant_client import QdrantClient
from qdrant_client.http import models

from qbatch.connectors.qdrant_config import check_collection_name

SEPARATOR = "__"


def versioned_name(alias: str, stamp: str) -> str:
    """`{alias}__{stamp}`, the name of one build behind `alias`."""
    return check_collection_name(f"{alias}{SEPARATOR}{stamp}")


def alias_target(client: QdrantClient, alias: str) -> str | None:
    """The collection `alias` points at, or None when no such alias exists."""
    for a in client.get_aliases().aliases:
        if a.alias_name == alias:
            return a.collection_name
    return None


def switch_alias(client: QdrantClient, alias: str, new_collection: str) -> str | None:
    """Point `alias` at `new_collection` atomically; returns the collection it pointed at before."""
    if not client.collection_exists(new_collection) or alias_target(client, new_collection) is not None:
        # collection_exists is also true for an alias; an alias must not point at another alias.
        raise ValueError(f"cannot point alias {alias!r} at {new_collection!r}: it is not a collection "
                         "(missing, or itself an alias)")
    previous = alias_target(client, alias)
    ops: list[models.AliasOperations] = []
    if previous is not None:
        ops.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
    ops.append(models.CreateAliasOperation(
        create_alias=models.CreateAlias(collection_name=new_collection, alias_name=alias)))
    # One request: Qdrant applies the delete and the create together, so `alias` never dangles.
    client.update_collection_aliases(change_aliases_operations=ops)
    return previous


def collections_for_alias(client: QdrantClient, alias: str) -> list[str]:
    """Collections named `{alias}__*`, sorted by name (so by stamp, for sortable stamps)."""
    prefix = f"{alias}{SEPARATOR}"
    return sorted(c.name for c in client.get_collections().collections if c.name.startswith(prefix))


def delete_collections(client: QdrantClient, names: list[str], protect: str | None = None) -> list[str]:
    """Delete the named collections except the one `protect` (an alias) points at; returns those deleted."""
    live = alias_target(client, protect) if protect is not None else None
    deleted = []
    for name in names:
        if name == live or not client.collection_exists(name):
            continue
        client.delete_collection(name)
        deleted.append(name)
    return deleted


def stale_collections(client: QdrantClient, alias: str, keep: int) -> list[str]:
    """The `{alias}__*` collections beyond the newest `keep`, never including the live one."""
    if keep < 0:
        raise ValueError(f"keep must be >= 0, got {keep}")
    live = alias_target(client, alias)
    names = [n for n in collections_for_alias(client, alias) if n != live]
    return names[:max(0, len(names) - keep)]
