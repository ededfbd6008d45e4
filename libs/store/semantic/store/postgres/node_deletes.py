"""Deleting nodes inside a write's transaction: a node goes with its postings, its vectors
in every space, its relations and its rules; a tombstone keeps its version so an older
upsert arriving later stays out (:mod:`semantic.store.postgres.node_store` takes the
nodes' locks and reads what is stored first)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from semantic.core.nodes import DeleteOutcome, DeleteResult, Deletion, Stored
from semantic.core.spaces import Space, vector_table
from semantic.store.postgres import keyword
from semantic.store.postgres.relations import delete_node_relations
from semantic.store.postgres.rules import delete_node_rules


async def delete_stored(
    conn: asyncpg.Connection,
    spaces: Sequence[Space],
    deletes: Sequence[Deletion],
    stored: dict[tuple[str, str], Stored],
    *,
    stats: keyword.StatsDelta,
    ruled: set[str],
) -> list[DeleteResult]:
    """Apply ``deletes`` against ``stored`` (the nodes as read under their locks): a newer
    stored version wins (STALE), a ``Deletion.by_slug`` finding another node's id leaves it
    alone (NOT_FOUND); the tenants whose rules went are added to ``ruled``, the keyword
    statistics' changes to ``stats``."""
    results: list[DeleteResult] = []
    doomed: dict[str, list[str]] = {}
    tombs: dict[tuple[str, str], int] = {}
    slugs: dict[tuple[str, str], str] = {}  # the slug a versioned delete named its node by
    for d in deletes:
        current = stored.get((d.tenant, d.id))
        node = current.node if current else None
        if d.by_slug is not None and node is not None and node.slug != d.by_slug:
            results.append(DeleteResult(d.tenant, d.id, None, DeleteOutcome.NOT_FOUND))
            continue  # another node's id (Deletion.by_slug): not this delete's
        if current is not None and d.version and current.version > d.version:
            results.append(
                DeleteResult(d.tenant, d.id, node.slug if node else None, DeleteOutcome.STALE)
            )
            continue
        if node is None:
            results.append(DeleteResult(d.tenant, d.id, None, DeleteOutcome.NOT_FOUND))
        else:
            doomed.setdefault(d.tenant, []).append(d.id)
            results.append(DeleteResult(d.tenant, d.id, node.slug, DeleteOutcome.DELETED))
        if d.version or node is not None:
            version = max(d.version, current.version if current else 0)
            tombs[(d.tenant, d.id)] = max(version, tombs.get((d.tenant, d.id), 0))
            if d.version and d.named_slug:
                slugs[(d.tenant, d.id)] = d.named_slug
    for tenant, node_ids in sorted(doomed.items()):
        await keyword.remove_postings(conn, tenant, node_ids, stats)
        for space in spaces:
            await conn.execute(
                f"DELETE FROM {vector_table(space.id)}"
                " WHERE tenant = $1 AND node_id = ANY($2::text[])",
                tenant,
                node_ids,
            )
        await delete_node_relations(conn, tenant, node_ids)
        if await delete_node_rules(conn, tenant, node_ids):
            ruled.add(tenant)
        await conn.execute(
            "DELETE FROM semantic.nodes WHERE tenant = $1 AND id = ANY($2::text[])",
            tenant,
            node_ids,
        )
    if tombs:
        await conn.execute(
            "INSERT INTO semantic.node_tombstones (tenant, id, version, slug)"
            " SELECT k.tenant, k.id, k.version, k.slug FROM unnest("
            "  $1::text[], $2::text[], $3::bigint[], $4::text[]) AS k(tenant, id, version, slug)"
            " ON CONFLICT (tenant, id) DO UPDATE SET"
            " version = GREATEST(semantic.node_tombstones.version, EXCLUDED.version),"
            " slug = coalesce(EXCLUDED.slug, semantic.node_tombstones.slug),"
            " deleted_at = now()",
            [k[0] for k in tombs],
            [k[1] for k in tombs],
            list(tombs.values()),
            [slugs.get(k) for k in tombs],
        )
    return results
