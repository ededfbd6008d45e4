"""The core's ``NodeStore`` over a pool: each call takes a pooled connection (driver errors
translated by ``db``) and runs the node repository (``node_store``) on it.

Slugs are resolved by the store's one id-or-slug resolver (``node_keys.resolve_keys``),
which Search.Delete, Nearest, the indexer's events and recommendations all go through.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
import numpy as np

from semantic.core.domain import NodeRecord
from semantic.core.nodes import (
    DeleteOutcome,
    DeleteResult,
    Deletion,
    NodeWrite,
    Stored,
    VectorRow,
    WriteResult,
)
from semantic.core.spaces import Space
from semantic.store.postgres import spaces
from semantic.store.postgres.db import ReadConnections, connection
from semantic.store.postgres.node_keys import resolve_keys
from semantic.store.postgres.node_store import NodeRepository

Key = tuple[str, str]


class PostgresNodes:
    """Nodes and their vectors in PostgreSQL (see module doc)."""

    def __init__(self, pool: asyncpg.Pool, *, text_config: str) -> None:
        self._pool = pool
        self._repository = NodeRepository(text_config=text_config)
        self._reads = ReadConnections(pool)

    async def stored(self, keys: Sequence[Key]) -> dict[Key, Stored]:
        """Current state of (tenant, id) keys, tombstones included."""
        async with connection(self._pool) as conn:
            return await self._repository.stored(conn, keys)

    async def write(
        self, space: Space, writes: Sequence[NodeWrite], deletes: Sequence[Deletion] = ()
    ) -> tuple[list[WriteResult], list[DeleteResult]]:
        """Upserts and deletes in one transaction; deletes reach every space."""
        async with connection(self._pool) as conn:
            every_space = await spaces.list_spaces(conn) if deletes else []
            return await self._repository.write(conn, space, writes, deletes, every_space)

    async def replace_vectors(
        self,
        space: Space,
        computed: Mapping[Key, Sequence[VectorRow]],
        expected_hash: Mapping[Key, str],
    ) -> list[Key]:
        """Replace computed vectors of nodes whose content is still ``expected_hash``."""
        async with connection(self._pool) as conn:
            return await self._repository.replace_vectors(conn, space, computed, expected_hash)

    async def get(
        self, tenant: str, *, ids: Sequence[str] = (), slugs: Sequence[str] = ()
    ) -> list[NodeRecord]:
        """Nodes by id and/or slug, in no particular order (a read-path connection)."""
        async with self._reads.reading() as conn:
            return await self._repository.get(conn, tenant, ids=ids, slugs=slugs)

    async def ids_by_slug(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The node id of each (tenant, slug) that names a node."""
        if not keys:
            return {}
        async with connection(self._pool) as conn:
            found = await resolve_keys(conn, [(tenant, "", slug) for tenant, slug in keys])
        return {key: hit[0] for key, hit in zip(keys, found, strict=True) if hit is not None}

    async def centre(
        self, space: Space, tenant: str, *, node_id: str | None, slug: str | None, name: str
    ) -> tuple[str, np.ndarray[Any, Any] | None] | None:
        """A node's id and the mean of its ``name`` vectors (a read-path connection)."""
        async with self._reads.reading() as conn:
            return await self._repository.centre(
                conn, space, tenant, node_id=node_id, slug=slug, name=name
            )

    async def vectors(
        self, space: Space, tenant: str, ids: Sequence[str], *, name: str | None = None
    ) -> dict[str, list[VectorRow]]:
        """Stored vectors of nodes in ``space`` by node id (of one vector name if given)."""
        async with connection(self._pool) as conn:
            return await self._repository.vectors(conn, space, tenant, ids, name)

    async def delete(
        self,
        tenant: str,
        ids: Sequence[str],
        version: int = 0,
        unheld_slugs: Sequence[str] = (),
        named_slugs: Mapping[str, str] | None = None,
    ) -> list[tuple[str, str | None, DeleteOutcome]]:
        """Delete nodes and their vectors in every space, leaving tombstones."""
        async with connection(self._pool) as conn:
            every_space = await spaces.list_spaces(conn)
            return await self._repository.delete(
                conn,
                every_space,
                tenant,
                ids,
                version,
                unheld_slugs=unheld_slugs,
                named_slugs=named_slugs,
            )
