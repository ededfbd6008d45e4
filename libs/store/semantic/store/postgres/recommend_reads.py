"""Recommend's reads on PostgreSQL: :class:`RecommendReads` hands out sessions, one pooled
connection each (a spare one only when the pool has an idle connection now), implementing
:class:`semantic.core.recommend.ports.RecommendSession`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence, Set
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import numpy as np

from semantic.core.domain import Filter, NodeRecord
from semantic.core.recommend.journey import LoggedEvent
from semantic.core.recommend.ports import UserNode, UserRead
from semantic.core.recommend.values import (
    CandidateDetails,
    RelatedVia,
    Similar,
    SpaceRef,
    Wanted,
)
from semantic.store.postgres import candidate_rows, spaces
from semantic.store.postgres.db import ReadConnections, as_array
from semantic.store.postgres.journey_rows import USER_COLUMNS, logged_events, stored_user
from semantic.store.postgres.mean_vector import node_vectors
from semantic.store.postgres.node_keys import resolve_keys

Vector = np.ndarray[Any, Any]
EXCLUDED_SCAN = 5000
"""Of how many of a user's latest acted-on nodes the excluded ones are taken."""


class RecommendReads:
    """Sessions for Recommend over a pool; dense search tuned by ``ef_search`` (raised to
    the number of candidates asked) and ``exact_threshold`` (the search settings')."""

    def __init__(self, pool: asyncpg.Pool, *, ef_search: int, exact_threshold: int) -> None:
        self._pool = pool
        self._connections = ReadConnections(pool)
        self._ef_search = ef_search
        self._exact_threshold = exact_threshold

    @asynccontextmanager
    async def session(self) -> AsyncIterator[RecommendSession]:
        """A session on a pooled connection (waits for one)."""
        async with self._connections.reading() as conn:
            yield RecommendSession(conn, self._ef_search, self._exact_threshold)

    @asynccontextmanager
    async def spare(self) -> AsyncIterator[RecommendSession | None]:
        """A second session if the pool has an idle connection now, else None: a request
        that holds a connection never waits for another (no deadlock when the pool runs
        dry)."""
        if self._pool.get_idle_size() == 0:
            yield None
            return
        async with self.session() as session:
            yield session


class RecommendSession:
    """Recommend's reads on one connection."""

    def __init__(self, conn: asyncpg.Connection, ef_search: int, exact_threshold: int) -> None:
        self._conn = conn
        self._ef_search = ef_search
        self._exact_threshold = exact_threshold

    async def user(
        self,
        tenant: str,
        user_id: str,
        *,
        exclude_seen: bool,
        include_converted: bool,
        centroids_in: SpaceRef | None = None,
    ) -> UserRead:
        """The user's row, exclusions, conflicts and (asked, for a known user without an
        archetype) the derived archetypes' centroids, in one round trip."""
        row = await self._conn.fetchrow(
            f"SELECT u.user_id IS NOT NULL AS found, {USER_COLUMNS},"
            " ARRAY(SELECT s.node_id FROM (SELECT node_id, seen, converted, dismissed"
            "   FROM semantic.user_nodes WHERE tenant = $1 AND user_id = $2"
            "   AND (dismissed OR converted OR $3) ORDER BY last_at DESC LIMIT $5) AS s"
            "  WHERE s.dismissed OR (s.converted AND NOT $4) OR (s.seen AND $3)) AS excluded,"
            # conflicts: (node, converted node) pairs
            " ARRAY(SELECT ARRAY[c.node_id, c.converted] FROM (SELECT DISTINCT"
            "   CASE WHEN r.source_id = s.node_id THEN r.target_id ELSE r.source_id END"
            "   AS node_id, s.node_id AS converted"
            "   FROM semantic.user_nodes s JOIN semantic.relations r"
            "   ON r.tenant = s.tenant AND r.type = 'conflicts'"
            "   AND (r.source_id = s.node_id OR r.target_id = s.node_id)"
            "   WHERE s.tenant = $1 AND s.user_id = $2 AND s.converted"
            "   ORDER BY 1, 2 LIMIT 1000) AS c) AS conflicts,"
            # centroids: only for a user without an archetype, when asked
            " u.user_id IS NOT NULL AND coalesce(u.archetype, '') = ''"
            "  AND $6::bigint IS NOT NULL AS with_centroids,"
            " CASE WHEN u.user_id IS NOT NULL AND coalesce(u.archetype, '') = '' THEN ARRAY("
            "   SELECT label FROM semantic.archetype_centroids"
            "   WHERE tenant = $1 AND space_id = $6::bigint ORDER BY label) END AS labels,"
            " CASE WHEN u.user_id IS NOT NULL AND coalesce(u.archetype, '') = '' THEN ARRAY("
            "   SELECT centroid FROM semantic.archetype_centroids"
            "   WHERE tenant = $1 AND space_id = $6::bigint ORDER BY label) END AS centroids"
            " FROM (SELECT 1) AS one"
            " LEFT JOIN semantic.users u ON u.tenant = $1 AND u.user_id = $2",
            tenant,
            user_id,
            exclude_seen,
            include_converted,
            EXCLUDED_SCAN,
            centroids_in.id if centroids_in is not None else None,
        )
        assert row is not None  # the statement always returns one row
        centroids = None
        if row["with_centroids"]:
            vectors = [as_array(c) for c in row["centroids"]]
            centroids = list(zip(map(str, row["labels"]), vectors, strict=True))
        return UserRead(
            row=stored_user(row) if row["found"] else None,
            excluded=list(row["excluded"]),
            conflicts=tuple((pair[0], pair[1]) for pair in row["conflicts"]),
            centroids=centroids,
        )

    async def user_nodes(
        self, tenant: str, user_id: str, node_ids: Sequence[str]
    ) -> list[UserNode]:
        """The user's flags on these nodes (the recommendation debugger's read)."""
        rows = await self._conn.fetch(
            "SELECT node_id, seen, converted, dismissed FROM semantic.user_nodes"
            " WHERE tenant = $1 AND user_id = $2 AND node_id = ANY($3::text[])",
            tenant,
            user_id,
            list(node_ids),
        )
        return [UserNode(r["node_id"], r["seen"], r["converted"], r["dismissed"]) for r in rows]

    async def resolve(
        self, tenant: str, ids: Sequence[str], slugs: Sequence[str]
    ) -> list[tuple[str, str | None]]:
        """(id, slug) of the tenant's nodes named by id or slug."""
        keys = [(tenant, i, "") for i in ids if i] + [(tenant, "", s) for s in slugs if s]
        found = await resolve_keys(self._conn, keys)
        return list(dict.fromkeys(hit for hit in found if hit is not None))

    async def logged_events(self, tenant: str, user_id: str, limit: int) -> list[LoggedEvent]:
        """The user's latest logged events, newest first."""
        return await logged_events(self._conn, tenant, user_id, limit)

    async def node_vectors(
        self, space: SpaceRef, keys: Set[tuple[str, str]], name: str
    ) -> dict[tuple[str, str], Vector]:
        """Each node's mean vector ``name`` in ``space``."""
        return await node_vectors(self._conn, space.id, keys, name)

    async def nearest(
        self,
        space: SpaceRef,
        tenant: str,
        vector: Vector,
        *,
        vector_name: str,
        flt: Filter,
        limit: int,
        wanted: Wanted | None = None,
    ) -> tuple[list[str], dict[str, CandidateDetails]]:
        """The ``limit`` nearest nodes passing ``flt`` (with ``wanted``, their details read
        in the same statement when the index answers)."""
        return await candidate_rows.nearest(
            self._conn,
            space.id,
            tenant,
            vector,
            vector_name=vector_name,
            flt=flt,
            limit=limit,
            ef_search=self._ef_search,
            exact_threshold=self._exact_threshold,
            halfvec_dim=spaces.halfvec_dim(space.index_precision, space.dim),
            wanted=wanted,
        )

    async def popular(
        self, space: SpaceRef, tenant: str, flt: Filter, limit: int, wanted: Wanted
    ) -> tuple[list[tuple[str, bool]], float, dict[str, CandidateDetails]]:
        """The archetype's and the tenant's popular nodes, with their details."""
        return await candidate_rows.popular(
            self._conn, space.id, tenant, flt, limit=limit, wanted=wanted
        )

    async def details(
        self, space: SpaceRef, tenant: str, ids: Sequence[str], wanted: Wanted
    ) -> dict[str, CandidateDetails]:
        """What scoring needs of each candidate."""
        return await candidate_rows.details(self._conn, space.id, tenant, ids, wanted)

    async def complete(
        self, space: SpaceRef, tenant: str, vector_name: str, ids: Sequence[str]
    ) -> dict[str, tuple[NodeRecord, Vector | None]]:
        """The final hits' full nodes and vectors."""
        return await candidate_rows.complete(self._conn, space.id, tenant, vector_name, ids)

    async def journey_items(
        self, space: SpaceRef, tenant: str, user_id: str, vector_name: str, limit: int
    ) -> list[tuple[Similar, Vector]]:
        """The user's latest nodes acted on."""
        return await candidate_rows.journey_items(
            self._conn, space.id, tenant, user_id=user_id, vector_name=vector_name, limit=limit
        )

    async def related(
        self, tenant: str, user_id: str, flt: Filter, recent: int
    ) -> tuple[RelatedVia, ...]:
        """Where the user's recent nodes lead."""
        return await candidate_rows.related(self._conn, tenant, user_id, flt, recent)

    async def engagement_totals(self, tenant: str) -> tuple[float, float]:
        """(clicks + likes + conversions, impressions) over the tenant's nodes."""
        row = await self._conn.fetchrow(
            "SELECT sum(clicks + likes + conversions)::float8 AS engaged,"
            " sum(impressions)::float8 AS shown FROM semantic.node_engagement WHERE tenant = $1",
            tenant,
        )
        if row is None:
            return 0.0, 0.0
        return float(row["engaged"] or 0), float(row["shown"] or 0)
