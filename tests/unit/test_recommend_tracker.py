"""The Track use case against an in-memory store at the core's own protocol seam: unknown
nodes are listed, redelivered events count as duplicates, and a user's journey, archetype
and event count move once per new event."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence, Set
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from semantic.core.recommend.events import Action, TrackConfig, UserEventRecord
from semantic.core.recommend.journey import LoggedEvent, StoredUser, decay
from semantic.core.recommend.tracker import Tracker
from semantic.core.recommend.tracking import EngagementDelta, UserNodeState, UserUpdate
from semantic.core.recommend.values import SpaceRef

pytestmark = pytest.mark.unit
T0 = datetime(2026, 6, 1, tzinfo=UTC)
CONFIG = TrackConfig(
    weights={
        Action.IMPRESSION: 0.0,
        Action.VIEW: 1.0,
        Action.CLICK: 2.0,
        Action.LIKE: 3.0,
        Action.CONVERT: 5.0,
        Action.DISMISS: -2.0,
    },
    half_life_hours=72.0,
    max_future_s=300.0,
)


@dataclass(frozen=True)
class _Space:
    id: int = 1
    dim: int = 2


class _Memory:
    """Nodes, their vectors, the event log and the derived rows, in dictionaries."""

    def __init__(self) -> None:
        self.nodes = {("t", "a"): "slug-a", ("t", "b"): None}
        self.vectors = {("t", "a"): np.array([1.0, 0.0]), ("t", "b"): np.array([0.0, 1.0])}
        self.log: dict[tuple[str, str], UserEventRecord] = {}
        self.users: dict[tuple[str, str], StoredUser] = {}
        self.engagement: dict[tuple[str, str], float] = {}
        self.archetypes: dict[tuple[str, str, str], float] = {}
        self.transactions = 0

    @asynccontextmanager
    async def session(self) -> AsyncIterator[_Memory]:
        yield self

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        self.transactions += 1
        yield

    async def resolve_events(self, events: Sequence[UserEventRecord]) -> list[str | None]:
        out: list[str | None] = []
        for e in events:
            if e.node_id:
                out.append(e.node_id if (e.tenant, e.node_id) in self.nodes else None)
            else:
                found = [
                    n for (t, n), slug in self.nodes.items() if t == e.tenant and slug == e.slug
                ]
                out.append(found[0] if found else None)
        return out

    async def log_events(self, events: Sequence[UserEventRecord]) -> set[tuple[str, str]]:
        fresh = set()
        for e in events:
            key = (e.tenant, e.event_id)
            if key not in self.log:
                self.log[key] = e
                fresh.add(key)
        return fresh

    async def add_engagement(self, deltas: Sequence[EngagementDelta]) -> None:
        for d in deltas:
            key = (d.tenant, d.node_id)
            self.engagement[key] = self.engagement.get(key, 0.0) + d.popularity

    async def merge_user_nodes(self, states: Sequence[UserNodeState]) -> None:
        return None

    async def lock_users(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], StoredUser]:
        return {k: self.users[k] for k in keys if k in self.users}

    async def logged_events(self, tenant: str, user_id: str, limit: int) -> list[LoggedEvent]:
        own = [e for e in self.log.values() if (e.tenant, e.user_id) == (tenant, user_id)]
        own.sort(key=lambda e: e.occurred_at, reverse=True)
        return [
            LoggedEvent(e.event_id, e.node_id, e.action, e.weight, e.occurred_at)
            for e in own[:limit]
        ]

    async def node_vectors(
        self, space: SpaceRef, keys: Set[tuple[str, str]], name: str
    ) -> dict[tuple[str, str], Any]:
        return {k: self.vectors[k] for k in keys if k in self.vectors}

    async def save_users(self, updates: Sequence[UserUpdate]) -> None:
        for u in updates:
            self.users[(u.tenant, u.user_id)] = StoredUser(
                u.archetype,
                u.archetype_source,
                u.space_id,
                u.journey.sum,
                u.journey.weight,
                u.journey.at,
                u.events,
            )

    async def add_archetype_scores(self, scores: Mapping[tuple[str, str, str], float]) -> None:
        for key, score in scores.items():
            self.archetypes[key] = self.archetypes.get(key, 0.0) + score


def _event(
    event_id: str,
    *,
    node: str = "",
    slug: str = "",
    action: Action = Action.VIEW,
    hours: float = 0,
    **extra: Any,
) -> UserEventRecord:
    return UserEventRecord(
        event_id, "u", "t", node, slug, action, T0 + timedelta(hours=hours), **extra
    )


async def test_unknown_nodes_are_listed_and_known_ones_resolved_by_slug() -> None:
    memory = _Memory()
    result = await Tracker(memory, CONFIG).track(
        _Space(), [_event("1", node="zz"), _event("2", slug="slug-a")]
    )
    assert result.unknown == [0]
    assert result.accepted == 1
    assert memory.log[("t", "2")].node_id == "a"


async def test_a_redelivered_batch_changes_nothing_twice() -> None:
    memory = _Memory()
    tracker = Tracker(memory, CONFIG)
    batch = [
        _event("1", node="a", archetype="reader"),
        _event("2", node="b", action=Action.CLICK, hours=1),
    ]
    first = await tracker.track(_Space(), batch)
    stored = memory.users[("t", "u")]
    again = await tracker.track(_Space(), batch)
    assert (first.accepted, first.duplicates) == (2, 0)
    assert (again.accepted, again.duplicates) == (0, 2)
    assert memory.users[("t", "u")] == stored
    assert stored.events == 2
    assert stored.archetype == "reader"
    assert stored.archetype_source == "given"
    assert memory.archetypes == {("t", "reader", "a"): 1.0, ("t", "reader", "b"): 2.0}
    assert memory.engagement == {("t", "a"): 1.0, ("t", "b"): 2.0}


async def test_a_journey_of_another_space_is_rebuilt_from_the_log_counting_each_event_once() -> (
    None
):
    memory = _Memory()
    tracker = Tracker(memory, CONFIG)
    await tracker.track(_Space(id=1), [_event("1", node="a")])
    await tracker.track(_Space(id=2), [_event("2", node="b", hours=1)])
    user = memory.users[("t", "u")]
    assert user.space_id == 2
    assert user.journey_sum is not None
    # the first event replayed in the new space, the second (logged already) added once
    assert np.allclose(user.journey_sum, [decay(1.0, 72.0), 1.0])
    assert user.journey_weight == pytest.approx(decay(1.0, 72.0) + 1.0)
    assert user.events == 2
