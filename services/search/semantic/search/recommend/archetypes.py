"""Derived archetypes: k-means over users' journey vectors, per tenant and space.

Users who never got an archetype from a client (``UserEvent.archetype``) are clustered
by their journey direction (cosine k-means, k-means++ seeding, fixed seed). Each cluster
becomes an archetype labelled ``derived_<n>`` (labels starting with ``derived_`` are
reserved for this), with a centroid that Recommend uses to place users who were not
clustered yet, and a prior rebuilt from its members' positive events. Client-given
archetypes are never overwritten. Runs from the indexer's heal loop and from
``semantic archetypes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import numpy as np
import structlog

from semantic.core.spaces import Space
from semantic.search.recommend.tracking import Action, TrackConfig
from semantic.store.postgres.db import connection

log = structlog.get_logger(__name__)
PREFIX = "derived_"


@dataclass(frozen=True)
class DerivedArchetypes:
    """What one derivation did for one tenant."""

    tenant: str
    users: int
    clusters: int


def kmeans(
    vectors: np.ndarray[Any, Any], k: int, *, seed: int = 7, rounds: int = 25
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """(centroids [k, d] unit length, label per row) of cosine k-means on unit rows."""
    rng = np.random.default_rng(seed)
    n = vectors.shape[0]
    centroids = [vectors[int(rng.integers(n))]]
    for _ in range(1, k):  # k-means++: far from the chosen ones, with probability
        distance = 1 - np.max(vectors @ np.stack(centroids).T, axis=1)
        weights = np.clip(distance, 0, None) ** 2
        total = float(weights.sum())
        index = int(rng.choice(n, p=weights / total)) if total > 0 else int(rng.integers(n))
        centroids.append(vectors[index])
    matrix = np.stack(centroids)
    labels = np.zeros(n, dtype=np.int64)
    for _ in range(rounds):
        labels = np.argmax(vectors @ matrix.T, axis=1)
        moved = matrix.copy()
        for cluster in range(k):
            members = vectors[labels == cluster]
            if len(members):
                mean = members.mean(axis=0)
                moved[cluster] = mean / max(float(np.linalg.norm(mean)), 1e-12)
        if np.allclose(moved, matrix):
            break
        matrix = moved
    return matrix, labels


async def derive_archetypes(
    pool: asyncpg.Pool,
    space: Space,
    config: TrackConfig,
    *,
    k: int = 8,
    min_events: int = 3,
) -> list[DerivedArchetypes]:
    """Cluster every tenant's users (see the module doc); returns what was done."""
    async with connection(pool) as conn:
        tenants = [
            r["tenant"]
            for r in await conn.fetch(
                "SELECT DISTINCT tenant FROM semantic.users WHERE space_id = $1", space.id
            )
        ]
    return [
        await _derive_tenant(pool, space, config, t, k=k, min_events=min_events) for t in tenants
    ]


async def _derive_tenant(
    pool: asyncpg.Pool,
    space: Space,
    config: TrackConfig,
    tenant: str,
    *,
    k: int,
    min_events: int,
) -> DerivedArchetypes:
    async with connection(pool) as conn:
        rows = await conn.fetch(
            "SELECT user_id, journey_sum FROM semantic.users WHERE tenant = $1"
            " AND space_id = $2 AND events >= $3 AND journey_sum IS NOT NULL"
            " AND (archetype IS NULL OR archetype_source = 'derived')",
            tenant,
            space.id,
            min_events,
        )
    vectors = np.asarray([r["journey_sum"] for r in rows], np.float32)
    if len(rows):
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        keep = norms[:, 0] > 1e-9
        rows = [r for r, ok in zip(rows, keep, strict=True) if ok]
        vectors = vectors[keep] / norms[keep]
    clusters = min(k, len(rows) // 2)
    if clusters < 2:
        return DerivedArchetypes(tenant, len(rows), 0)
    centroids, labels = kmeans(vectors, clusters)
    names = [f"{PREFIX}{i}" for i in range(clusters)]
    weights = config.weights
    async with connection(pool) as conn, conn.transaction():
        await conn.execute(
            "DELETE FROM semantic.archetype_centroids WHERE tenant = $1 AND space_id = $2",
            tenant,
            space.id,
        )
        await conn.executemany(
            "INSERT INTO semantic.archetype_centroids (tenant, space_id, label, centroid, members)"
            " VALUES ($1, $2, $3, $4, $5)",
            [
                (tenant, space.id, names[i], centroids[i].tolist(), int((labels == i).sum()))
                for i in range(clusters)
            ],
        )
        await conn.execute(
            "UPDATE semantic.users u SET archetype = k.label, archetype_source = 'derived'"
            " FROM unnest($2::text[], $3::text[]) AS k(user_id, label)"
            " WHERE u.tenant = $1 AND u.user_id = k.user_id",
            tenant,
            [r["user_id"] for r in rows],
            [names[int(label)] for label in labels],
        )
        await conn.execute(
            "DELETE FROM semantic.archetype_engagement WHERE tenant = $1 AND archetype LIKE $2",
            tenant,
            PREFIX + "%",
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
            PREFIX + "%",
            int(Action.VIEW),
            weights[Action.VIEW],
            int(Action.CLICK),
            weights[Action.CLICK],
            int(Action.LIKE),
            weights[Action.LIKE],
            int(Action.CONVERT),
            weights[Action.CONVERT],
        )
    log.info("archetypes_derived", tenant=tenant, users=len(rows), clusters=clusters)
    return DerivedArchetypes(tenant, len(rows), clusters)
