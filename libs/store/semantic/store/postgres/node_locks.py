"""Node write locks: one per (tenant, id), taken before a node or its vectors change.

Every transaction that changes a node or its vectors (Upsert, indexer batches, deletes,
heal, backfill, reindex) first takes one transaction-scoped advisory lock per (tenant, id)
key, all at once, in ascending lock-id order. Locks exist before rows do, so two writers of
a node that does not exist yet are serialised like writers of an existing one: the second
decides against what the first committed, and the newest version wins under any
interleaving. One order for every writer: they never wait for each other in a cycle.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import asyncpg

NODE_LOCK_CLASS = 0x5E3B
"""First key of the node write locks (``pg_advisory_xact_lock(class, id)``); the second is
:func:`node_lock_id`. Maintenance's space-build lock uses 0x5E3A."""


def node_lock_id(tenant: str, node_id: str) -> int:
    """The second key of the write lock of node ``(tenant, id)``: 32 bits of its sha256.

    Two keys may share a lock id; they are then serialised together, which is harmless."""
    digest = hashlib.sha256(
        tenant.encode("utf-8", "surrogatepass") + b"\x00" + node_id.encode("utf-8", "surrogatepass")
    ).digest()
    return int.from_bytes(digest[:4], "big", signed=True)


async def lock_nodes(conn: asyncpg.Connection, keys: Iterable[tuple[str, str]]) -> None:
    """Take the write locks of ``keys`` (tenant, id) until the transaction ends, in one
    statement, in ascending lock-id order. A lock the transaction holds already is free."""
    ids = sorted({node_lock_id(tenant, node_id) for tenant, node_id in keys})
    if ids:
        await conn.execute(
            "SELECT count(pg_advisory_xact_lock($1, k.id)) FROM unnest($2::int4[]) AS k(id)",
            NODE_LOCK_CLASS,
            ids,
        )
