"""User events in: validation, then one transaction that logs them and updates the
user's journey, the user-node state, the node's engagement and the archetype's prior.

The journey is a time-decayed, action-weighted sum of node vectors,

    S(t) = S(t0) * 0.5 ** ((t - t0) / half_life) + weight * v_node      (v_node unit length)
    W(t) = W(t0) * 0.5 ** ((t - t0) / half_life) + |weight|

and the journey vector is S / |S| (W is kept for the record: how much evidence there is).
An event older than the journey's clock is added with its own decay instead, so arrival
order does not matter. A dismiss has a negative weight and pushes the sum away.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any

import asyncpg
import numpy as np

from semantic.common.errors import InvalidArgument
from semantic.core.spaces import Space
from semantic.store.postgres.db import as_array

ARCHETYPE_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"


class Action(IntEnum):
    """UserAction values of events.proto."""

    IMPRESSION = 1
    VIEW = 2
    CLICK = 3
    LIKE = 4
    CONVERT = 5
    DISMISS = 6


@dataclass(frozen=True)
class TrackConfig:
    """Weights and clocks of tracking (from settings)."""

    weights: Mapping[Action, float] = field(
        default_factory=lambda: {
            Action.IMPRESSION: 0.0,
            Action.VIEW: 1.0,
            Action.CLICK: 2.0,
            Action.LIKE: 3.0,
            Action.CONVERT: 5.0,
            Action.DISMISS: -2.0,
        }
    )
    half_life_hours: float = 72.0
    max_future_s: float = 300.0
    vector_name: str = "content"


@dataclass(frozen=True)
class UserEventRecord:
    """One validated user event (node named by id or slug; resolved before writing)."""

    event_id: str
    user_id: str
    tenant: str
    node_id: str
    slug: str
    action: Action
    occurred_at: datetime
    weight: float | None = None
    archetype: str = ""
    session_id: str = ""
    context: Mapping[str, Any] | None = None
    source: str = ""


@dataclass
class TrackResult:
    """What a Track call did."""

    accepted: int = 0
    duplicates: int = 0
    unknown: list[int] = field(default_factory=list)


def journey_weight(config: TrackConfig, event: UserEventRecord) -> float:
    """The weight an event moves the journey by (0 for impressions)."""
    if event.action is Action.IMPRESSION:
        return 0.0
    return float(event.weight if event.weight is not None else config.weights[event.action])


def check_time(occurred_at: datetime, now: datetime, max_future_s: float, field_name: str) -> None:
    """INVALID_ARGUMENT for a time too far in the future."""
    if occurred_at > now + timedelta(seconds=max_future_s):
        raise InvalidArgument(
            field_name, f"is more than {max_future_s:g} s in the future ({occurred_at.isoformat()})"
        )


class Tracker:
    """Stores user events and everything derived from them, one transaction per call."""

    def __init__(self, config: TrackConfig | None = None) -> None:
        self._config = config or TrackConfig()

    @property
    def config(self) -> TrackConfig:
        """The weights and clocks in use."""
        return self._config

    async def track(
        self, conn: asyncpg.Connection, space: Space, events: Sequence[UserEventRecord]
    ) -> TrackResult:
        """Record ``events`` (one tenant or several) in one transaction."""
        result = TrackResult()
        resolved = await self._resolve(conn, events)
        known = [(i, e) for i, e in enumerate(resolved) if e is not None]
        result.unknown = [i for i, e in enumerate(resolved) if e is None]
        if not known:
            return result
        async with conn.transaction():
            rows = await conn.fetch(
                "INSERT INTO semantic.user_events (tenant, event_id, user_id, node_id, action,"
                " weight, occurred_at, session_id, archetype, source, context)"
                " SELECT t, e, u, n, a, w, o, s, ar, so, c::jsonb FROM unnest($1::text[],"
                " $2::text[], $3::text[], $4::text[], $5::smallint[], $6::float8[],"
                " $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::text[])"
                " AS k(t, e, u, n, a, w, o, s, ar, so, c)"
                " ON CONFLICT (tenant, event_id) DO NOTHING RETURNING tenant, event_id",
                *_columns([e for _, e in known]),
            )
            fresh_keys = {(r["tenant"], r["event_id"]) for r in rows}
            fresh: list[UserEventRecord] = []
            seen_keys: set[tuple[str, str]] = set()
            for _, event in known:
                key = (event.tenant, event.event_id)
                if key in fresh_keys and key not in seen_keys:
                    fresh.append(event)
                    seen_keys.add(key)
                else:
                    result.duplicates += 1
            result.accepted = len(fresh)
            if fresh:
                await self._engagement(conn, fresh)
                await self._user_nodes(conn, fresh)
                archetypes = await self._users(conn, space, fresh)
                await self._archetypes(conn, fresh, archetypes)
        return result

    async def _resolve(
        self, conn: asyncpg.Connection, events: Sequence[UserEventRecord]
    ) -> list[UserEventRecord | None]:
        """Events with their node id; None where the node does not exist."""
        tenants = [e.tenant for e in events]
        keys = [e.node_id or "" for e in events]
        slugs = [e.slug or "" for e in events]
        rows = await conn.fetch(
            "SELECT k.i, n.id FROM unnest($1::text[], $2::text[], $3::text[])"
            " WITH ORDINALITY AS k(tenant, id, slug, i)"
            " JOIN semantic.nodes n ON n.tenant = k.tenant"
            " AND ((k.id <> '' AND n.id = k.id) OR (k.id = '' AND n.slug = k.slug))",
            tenants,
            keys,
            slugs,
        )
        ids = {int(r["i"]) - 1: r["id"] for r in rows}
        out: list[UserEventRecord | None] = []
        for index, event in enumerate(events):
            node_id = ids.get(index)
            if node_id is None:
                out.append(None)
            elif node_id == event.node_id:
                out.append(event)
            else:
                out.append(_with_node(event, node_id))
        return out

    async def _engagement(self, conn: asyncpg.Connection, events: list[UserEventRecord]) -> None:
        counts: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0] * 7)
        last: dict[tuple[str, str], datetime] = {}
        for event in events:
            key = (event.tenant, event.node_id)
            row = counts[key]
            if event.action in (Action.IMPRESSION, Action.VIEW):
                row[0] += 1
            column = {
                Action.VIEW: 1,
                Action.CLICK: 2,
                Action.LIKE: 3,
                Action.CONVERT: 4,
                Action.DISMISS: 5,
            }.get(event.action)
            if column is not None:
                row[column] += 1
            row[6] += max(0.0, journey_weight(self._config, event)) - (
                2.0 if event.action is Action.DISMISS else 0.0
            )
            last[key] = max(last.get(key, event.occurred_at), event.occurred_at)
        keys = sorted(counts)
        await conn.execute(
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
            [k[0] for k in keys],
            [k[1] for k in keys],
            *[[int(counts[k][c]) for k in keys] for c in range(6)],
            [counts[k][6] for k in keys],
            [last[k] for k in keys],
        )

    async def _user_nodes(self, conn: asyncpg.Connection, events: list[UserEventRecord]) -> None:
        state: dict[tuple[str, str, str], list[Any]] = {}
        for event in events:
            key = (event.tenant, event.user_id, event.node_id)
            row = state.setdefault(key, [False, False, False, 0, event.occurred_at])
            row[0] |= event.action in (Action.VIEW, Action.CLICK, Action.LIKE, Action.CONVERT)
            row[1] |= event.action is Action.CONVERT
            row[2] |= event.action is Action.DISMISS
            if event.action is not Action.IMPRESSION:
                row[3] = max(row[3], int(event.action))
            row[4] = max(row[4], event.occurred_at)
        keys = sorted(state)
        await conn.execute(
            "INSERT INTO semantic.user_nodes AS s (tenant, user_id, node_id, seen, converted,"
            " dismissed, strongest, last_at)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[], $5::bool[],"
            " $6::bool[], $7::int2[], $8::timestamptz[])"
            " ON CONFLICT (tenant, user_id, node_id) DO UPDATE SET"
            " seen = s.seen OR EXCLUDED.seen, converted = s.converted OR EXCLUDED.converted,"
            " dismissed = s.dismissed OR EXCLUDED.dismissed,"
            " strongest = GREATEST(s.strongest, EXCLUDED.strongest),"
            " last_at = GREATEST(s.last_at, EXCLUDED.last_at)",
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
            *[[state[k][c] for k in keys] for c in range(5)],
        )

    async def _users(
        self, conn: asyncpg.Connection, space: Space, events: list[UserEventRecord]
    ) -> dict[tuple[str, str], str]:
        """Update each user's journey; returns each user's archetype (may be empty)."""
        by_user: dict[tuple[str, str], list[UserEventRecord]] = defaultdict(list)
        for event in events:
            by_user[(event.tenant, event.user_id)].append(event)
        users = sorted(by_user)
        rows = await conn.fetch(
            "SELECT u.tenant, u.user_id, u.archetype, u.archetype_source, u.space_id,"
            " u.journey_sum, u.journey_weight, u.journey_at, u.events"
            " FROM semantic.users u JOIN unnest($1::text[], $2::text[]) AS k(tenant, user_id)"
            " ON u.tenant = k.tenant AND u.user_id = k.user_id"
            " ORDER BY u.tenant, u.user_id FOR UPDATE OF u",
            [u[0] for u in users],
            [u[1] for u in users],
        )
        current = {(r["tenant"], r["user_id"]): r for r in rows}
        vectors = await node_vectors(
            conn,
            space,
            {(e.tenant, e.node_id) for e in events if journey_weight(self._config, e)},
            self._config.vector_name,
        )
        archetypes: dict[tuple[str, str], str] = {}
        records = []
        for key in users:
            row = current.get(key)
            journey = Journey.from_row(row, space) if row is not None else Journey.empty()
            if row is not None and row["space_id"] not in (None, space.id):
                journey = await self._replay(conn, space, key)
            archetype = row["archetype"] if row is not None else None
            source = row["archetype_source"] if row is not None else None
            for event in sorted(by_user[key], key=lambda e: e.occurred_at):
                weight = journey_weight(self._config, event)
                vector = vectors.get((event.tenant, event.node_id))
                if weight and vector is not None:
                    journey.add(vector, weight, event.occurred_at, self._config.half_life_hours)
                if event.archetype:
                    archetype, source = event.archetype, "given"
            archetypes[key] = archetype or ""
            records.append(
                (
                    key[0],
                    key[1],
                    archetype,
                    source,
                    space.id,
                    journey.sum.tolist() if journey.sum is not None else None,
                    journey.weight,
                    journey.at,
                    (row["events"] if row is not None else 0) + len(by_user[key]),
                )
            )
        await conn.executemany(
            "INSERT INTO semantic.users (tenant, user_id, archetype, archetype_source, space_id,"
            " journey_sum, journey_weight, journey_at, events, updated_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now())"
            " ON CONFLICT (tenant, user_id) DO UPDATE SET archetype = EXCLUDED.archetype,"
            " archetype_source = EXCLUDED.archetype_source, space_id = EXCLUDED.space_id,"
            " journey_sum = EXCLUDED.journey_sum, journey_weight = EXCLUDED.journey_weight,"
            " journey_at = EXCLUDED.journey_at, events = EXCLUDED.events, updated_at = now()",
            records,
        )
        return archetypes

    async def _replay(
        self, conn: asyncpg.Connection, space: Space, key: tuple[str, str]
    ) -> Journey:
        """The journey rebuilt from the log in another space (after a model switch)."""
        return await replay_journey(conn, space, key[0], key[1], self._config)

    async def _archetypes(
        self,
        conn: asyncpg.Connection,
        events: list[UserEventRecord],
        archetypes: Mapping[tuple[str, str], str],
    ) -> None:
        scores: dict[tuple[str, str, str], float] = defaultdict(float)
        for event in events:
            label = archetypes.get((event.tenant, event.user_id), "")
            weight = journey_weight(self._config, event)
            if label and weight > 0:
                scores[(event.tenant, label, event.node_id)] += weight
        if not scores:
            return
        keys = sorted(scores)
        await conn.execute(
            "INSERT INTO semantic.archetype_engagement AS a (tenant, archetype, node_id, score)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[])"
            " ON CONFLICT (tenant, archetype, node_id)"
            " DO UPDATE SET score = a.score + EXCLUDED.score",
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
            [scores[k] for k in keys],
        )


@dataclass
class Journey:
    """A user's decayed weighted sum of node vectors."""

    sum: np.ndarray[Any, Any] | None
    weight: float
    at: datetime | None

    @classmethod
    def empty(cls) -> Journey:
        """No history."""
        return cls(None, 0.0, None)

    @classmethod
    def from_row(cls, row: Mapping[str, Any], space: Space) -> Journey:
        """The stored journey (empty when it belongs to another space)."""
        if row["journey_sum"] is None or row["space_id"] != space.id:
            return cls.empty()
        return cls(
            np.asarray(row["journey_sum"], np.float64),
            float(row["journey_weight"]),
            row["journey_at"],
        )

    def add(
        self, vector: np.ndarray[Any, Any], weight: float, at: datetime, half_life_h: float
    ) -> None:
        """Move the journey by ``weight`` towards (or away from) ``vector`` at time ``at``."""
        unit = np.asarray(vector, np.float64)
        norm = float(np.linalg.norm(unit))
        if norm == 0:
            return
        unit = unit / norm
        if self.sum is None or self.at is None:
            self.sum, self.weight, self.at = weight * unit, abs(weight), at
            return
        hours = (at - self.at).total_seconds() / 3600
        if hours >= 0:
            decay = 0.5 ** (hours / half_life_h)
            self.sum = self.sum * decay + weight * unit
            self.weight = self.weight * decay + abs(weight)
            self.at = at
        else:  # an older event: it enters already decayed
            decay = 0.5 ** (-hours / half_life_h)
            self.sum = self.sum + weight * decay * unit
            self.weight = self.weight + abs(weight) * decay

    def vector(self) -> np.ndarray[Any, Any] | None:
        """The unit journey vector, or None without history (or a zero sum)."""
        if self.sum is None:
            return None
        norm = float(np.linalg.norm(self.sum))
        if norm < 1e-9 or not math.isfinite(norm):
            return None
        return (self.sum / norm).astype(np.float32)


async def node_vectors(
    conn: asyncpg.Connection, space: Space, keys: set[tuple[str, str]], name: str
) -> dict[tuple[str, str], np.ndarray[Any, Any]]:
    """Each node's vector ``name`` in ``space`` (mean of its chunks)."""
    if not keys:
        return {}
    ordered = sorted(keys)
    rows = await conn.fetch(
        f"SELECT v.tenant, v.node_id, avg(v.embedding) AS vector FROM {space.table} v"
        " JOIN unnest($1::text[], $2::text[]) AS k(tenant, id)"
        " ON v.tenant = k.tenant AND v.node_id = k.id WHERE v.name = $3"
        " GROUP BY v.tenant, v.node_id",
        [k[0] for k in ordered],
        [k[1] for k in ordered],
        name,
    )
    return {(r["tenant"], r["node_id"]): as_array(r["vector"]) for r in rows}


async def replay_journey(
    conn: asyncpg.Connection, space: Space, tenant: str, user_id: str, config: TrackConfig
) -> Journey:
    """A user's journey recomputed from the last 1,000 events of the log in ``space``."""
    rows = await conn.fetch(
        "SELECT node_id, action, weight, occurred_at FROM semantic.user_events"
        " WHERE tenant = $1 AND user_id = $2 ORDER BY occurred_at DESC LIMIT 1000",
        tenant,
        user_id,
    )
    vectors = await node_vectors(
        conn, space, {(tenant, r["node_id"]) for r in rows}, config.vector_name
    )
    journey = Journey.empty()
    for row in reversed(rows):
        event = UserEventRecord(
            event_id="",
            user_id=user_id,
            tenant=tenant,
            node_id=row["node_id"],
            slug="",
            action=Action(row["action"]),
            occurred_at=row["occurred_at"],
            weight=row["weight"],
        )
        weight = journey_weight(config, event)
        vector = vectors.get((tenant, row["node_id"]))
        if weight and vector is not None:
            journey.add(vector, weight, row["occurred_at"], config.half_life_hours)
    return journey


def _with_node(event: UserEventRecord, node_id: str) -> UserEventRecord:
    return replace(event, node_id=node_id)


def _columns(events: list[UserEventRecord]) -> list[list[Any]]:
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


def utc_now() -> datetime:
    """Now, timezone-aware."""
    return datetime.now(UTC)
