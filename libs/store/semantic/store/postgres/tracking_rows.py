"""Track's writes on PostgreSQL: :class:`TrackStore` hands out sessions, one pooled
connection each, implementing :class:`semantic.core.recommend.ports.TrackSession`
(the event log, node engagement, user-node state, users and archetype priors)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence, Set
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import numpy as np

from semantic.core.recommend.events import UserEventRecord
from semantic.core.recommend.journey import LoggedEvent, StoredUser
from semantic.core.recommend.tracking import EngagementDelta, UserNodeState, UserUpdate
from semantic.core.recommend.values import SpaceRef
from semantic.store.postgres.db import connection
from semantic.store.postgres.journey_rows import USER_COLUMNS, logged_events, stored_user
from semantic.store.postgres.mean_vector import node_vectors
from semantic.store.postgres.node_keys import resolve_keys

_COUNTS = ("impressions", "views", "clicks", "likes", "conversions", "dismissals")


class TrackStore:
    """Track sessions over a pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def session(self) -> AsyncIterator[TrackSession]:
        """A session on a pooled connection (waits for one)."""
        async with connection(self._pool) as conn:
            yield TrackSession(conn)


class TrackSession:
    """Track's reads and writes on one connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """The writes inside commit together."""
        async with self._conn.transaction():
            yield

    async def resolve_events(self, events: Sequence[UserEventRecord]) -> list[str | None]:
        """Each event's node id (by id, else by slug); None where the node is unknown."""
        keys = [(e.tenant, e.node_id or "", e.slug or "") for e in events]
        return [None if hit is None else hit[0] for hit in await resolve_keys(self._conn, keys)]

    async def log_events(self, events: Sequence[UserEventRecord]) -> set[tuple[str, str]]:
        """Append to the log; the (tenant, event id) newly logged."""
        rows = await self._conn.fetch(
            "INSERT INTO semantic.user_events (tenant, event_id, user_id, node_id, action,"
            " weight, occurred_at, session_id, archetype, source, context)"
            " SELECT t, e, u, n, a, w, o, s, ar, so, c::jsonb FROM unnest($1::text[],"
            " $2::text[], $3::text[], $4::text[], $5::smallint[], $6::float8[],"
            " $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::text[])"
            " AS k(t, e, u, n, a, w, o, s, ar, so, c)"
            " ON CONFLICT (tenant, event_id) DO NOTHING RETURNING tenant, event_id",
            *_event_columns(events),
        )
        return {(r["tenant"], r["event_id"]) for r in rows}

    async def add_engagement(self, deltas: Sequence[EngagementDelta]) -> None:
        """Add the deltas to ``semantic.node_engagement``."""
        await self._conn.execute(
            "INSERT INTO semantic.node_engagement AS e (tenant, node_id, impressions, views,"
            " clicks, likes, conversions, dismissals, popularity, last_at)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[],"
            " $6::int8[], $7::int8[], $8::int8[], $9::float8[], $10::timestamptz[])"
            " ON CONFLICT (tenant, node_id) DO UPDATE SET"
            " impressions = e.impressions + EXCLUDED.impressions,"
            " views = e.views + EXCLUDED.views, clicks = e.clicks + EXCLUDED.clicks,"
            " likes = e.likes + EXCLUDED.likes, conversions = e.conversions + EXCLUDED.conversions,"
            " dismissals = e.dismissals + EXCLUDED.dismissals,"
            " popularity = e.popularity + EXCLUDED.popularity,"
            " last_at = GREATEST(e.last_at, EXCLUDED.last_at)",
            [d.tenant for d in deltas],
            [d.node_id for d in deltas],
            *[[int(getattr(d, column)) for d in deltas] for column in _COUNTS],
            [d.popularity for d in deltas],
            [d.last_at for d in deltas],
        )

    async def merge_user_nodes(self, states: Sequence[UserNodeState]) -> None:
        """Merge into ``semantic.user_nodes`` (flags OR-ed, strongest and time max-ed)."""
        await self._conn.execute(
            "INSERT INTO semantic.user_nodes AS s (tenant, user_id, node_id, seen, converted,"
            " dismissed, strongest, last_at)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[], $5::bool[],"
            " $6::bool[], $7::int2[], $8::timestamptz[])"
            " ON CONFLICT (tenant, user_id, node_id) DO UPDATE SET"
            " seen = s.seen OR EXCLUDED.seen, converted = s.converted OR EXCLUDED.converted,"
            " dismissed = s.dismissed OR EXCLUDED.dismissed,"
            " strongest = GREATEST(s.strongest, EXCLUDED.strongest),"
            " last_at = GREATEST(s.last_at, EXCLUDED.last_at)",
            [s.tenant for s in states],
            [s.user_id for s in states],
            [s.node_id for s in states],
            [s.seen for s in states],
            [s.converted for s in states],
            [s.dismissed for s in states],
            [s.strongest for s in states],
            [s.last_at for s in states],
        )

    async def lock_users(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], StoredUser]:
        """The stored users among ``keys``, locked (in key order) until the transaction ends."""
        ordered = sorted(keys)
        rows = await self._conn.fetch(
            f"SELECT u.tenant, u.user_id, {USER_COLUMNS}"
            " FROM semantic.users u JOIN unnest($1::text[], $2::text[]) AS k(tenant, user_id)"
            " ON u.tenant = k.tenant AND u.user_id = k.user_id"
            " ORDER BY u.tenant, u.user_id FOR UPDATE OF u",
            [k[0] for k in ordered],
            [k[1] for k in ordered],
        )
        return {(r["tenant"], r["user_id"]): stored_user(r) for r in rows}

    async def logged_events(self, tenant: str, user_id: str, limit: int) -> list[LoggedEvent]:
        """The user's latest logged events, newest first."""
        return await logged_events(self._conn, tenant, user_id, limit)

    async def node_vectors(
        self, space: SpaceRef, keys: Set[tuple[str, str]], name: str
    ) -> dict[tuple[str, str], np.ndarray[Any, Any]]:
        """Each node's mean vector ``name`` in ``space``."""
        return await node_vectors(self._conn, space.id, keys, name)

    async def save_users(self, updates: Sequence[UserUpdate]) -> None:
        """Insert or replace the users' rows."""
        await self._conn.executemany(
            "INSERT INTO semantic.users (tenant, user_id, archetype, archetype_source, space_id,"
            " journey_sum, journey_weight, journey_at, events, updated_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now())"
            " ON CONFLICT (tenant, user_id) DO UPDATE SET archetype = EXCLUDED.archetype,"
            " archetype_source = EXCLUDED.archetype_source, space_id = EXCLUDED.space_id,"
            " journey_sum = EXCLUDED.journey_sum, journey_weight = EXCLUDED.journey_weight,"
            " journey_at = EXCLUDED.journey_at, events = EXCLUDED.events, updated_at = now()",
            [
                (
                    u.tenant,
                    u.user_id,
                    u.archetype,
                    u.archetype_source,
                    u.space_id,
                    u.journey.sum.tolist() if u.journey.sum is not None else None,
                    u.journey.weight,
                    u.journey.at,
                    u.events,
                )
                for u in updates
            ],
        )

    async def add_archetype_scores(self, scores: Mapping[tuple[str, str, str], float]) -> None:
        """Add to ``semantic.archetype_engagement``."""
        keys = sorted(scores)
        await self._conn.execute(
            "INSERT INTO semantic.archetype_engagement AS a (tenant, archetype, node_id, score)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[])"
            " ON CONFLICT (tenant, archetype, node_id)"
            " DO UPDATE SET score = a.score + EXCLUDED.score",
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
            [scores[k] for k in keys],
        )


def _event_columns(events: Sequence[UserEventRecord]) -> list[list[Any]]:
    return [
        [e.tenant for e in events],
        [e.event_id for e in events],
        [e.user_id for e in events],
        [e.node_id for e in events],
        [int(e.action) for e in events],
        [e.weight for e in events],
        [e.occurred_at for e in events],
        [e.session_id or None for e in events],
        [e.archetype or None for e in events],
        [e.source or None for e in events],
        [json.dumps(dict(e.context)) if e.context else None for e in events],
    ]
