"""Derived archetypes on PostgreSQL: the users' journeys read per tenant, and the derived
centroids, assignments and priors replaced in one transaction
(:class:`semantic.core.recommend.ports.ArchetypeStore`)."""

from __future__ import annotations

from typing import Any

import asyncpg
import numpy as np

from semantic.core.recommend.events import Action
from semantic.core.recommend.ports import DerivedSet
from semantic.core.recommend.values import SpaceRef
from semantic.store.postgres.db import connection


class ArchetypeStore:
    """Users' journeys and derived archetypes over a pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def tenants(self, space: SpaceRef) -> list[str]:
        """Tenants with users whose journeys are in ``space``."""
        async with connection(self._pool) as conn:
            rows = await conn.fetch(
                "SELECT DISTINCT tenant FROM semantic.users WHERE space_id = $1", space.id
            )
        return [r["tenant"] for r in rows]

    async def journeys(
        self, space: SpaceRef, tenant: str, min_events: int
    ) -> list[tuple[str, np.ndarray[Any, Any]]]:
        """(user id, journey sum) of the users to cluster: enough events, a journey in
        ``space``, no archetype or a derived one."""
        async with connection(self._pool) as conn:
            rows = await conn.fetch(
                "SELECT user_id, journey_sum FROM semantic.users WHERE tenant = $1"
                " AND space_id = $2 AND events >= $3 AND journey_sum IS NOT NULL"
                " AND (archetype IS NULL OR archetype_source = 'derived')",
                tenant,
                space.id,
                min_events,
            )
        return [(r["user_id"], np.asarray(r["journey_sum"], np.float32)) for r in rows]

    async def replace_derived(self, space: SpaceRef, tenant: str, derived: DerivedSet) -> None:
        """Centroids replaced, users assigned, the derived priors rebuilt from the log."""
        weights = derived.weights
        pattern = derived.prefix + "%"
        async with connection(self._pool) as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM semantic.archetype_centroids WHERE tenant = $1 AND space_id = $2",
                tenant,
                space.id,
            )
            await conn.executemany(
                "INSERT INTO semantic.archetype_centroids"
                " (tenant, space_id, label, centroid, members) VALUES ($1, $2, $3, $4, $5)",
                [
                    (tenant, space.id, label, derived.centroids[i].tolist(), derived.members[i])
                    for i, label in enumerate(derived.labels)
                ],
            )
            await conn.execute(
                "UPDATE semantic.users u SET archetype = k.label, archetype_source = 'derived'"
                " FROM unnest($2::text[], $3::text[]) AS k(user_id, label)"
                " WHERE u.tenant = $1 AND u.user_id = k.user_id",
                tenant,
                [user for user, _ in derived.assignments],
                [label for _, label in derived.assignments],
            )
            await conn.execute(
                "DELETE FROM semantic.archetype_engagement WHERE tenant = $1 AND archetype LIKE $2",
                tenant,
                pattern,
            )
            await conn.execute(
                "INSERT INTO semantic.archetype_engagement (tenant, archetype, node_id, score)"
                " SELECT e.tenant, u.archetype, e.node_id, sum(coalesce(e.weight, CASE e.action"
                "   WHEN $3 THEN $4::float8 WHEN $5 THEN $6::float8 WHEN $7 THEN $8::float8"
                "   WHEN $9 THEN $10::float8 ELSE 0 END))"
                " FROM semantic.user_events e JOIN semantic.users u"
                "   ON u.tenant = e.tenant AND u.user_id = e.user_id"
                " WHERE e.tenant = $1 AND u.archetype LIKE $2 AND e.action IN ($3, $5, $7, $9)"
                " GROUP BY e.tenant, u.archetype, e.node_id HAVING sum(coalesce(e.weight, 1)) > 0",
                tenant,
                pattern,
                int(Action.VIEW),
                weights[Action.VIEW],
                int(Action.CLICK),
                weights[Action.CLICK],
                int(Action.LIKE),
                weights[Action.LIKE],
                int(Action.CONVERT),
                weights[Action.CONVERT],
            )
