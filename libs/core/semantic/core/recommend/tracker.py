"""Track: user events in, one transaction that logs them and updates the user's journey,
the user-node state, the node's engagement and the archetype's prior (the maths in
:mod:`semantic.core.recommend.tracking` and :mod:`semantic.core.recommend.journey`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import replace

from semantic.core.recommend.events import TrackConfig, TrackResult, UserEventRecord, event_weight
from semantic.core.recommend.journey import REPLAY_EVENTS, Journey, needs_replay, replay
from semantic.core.recommend.ports import JourneyLog, TrackSession, TrackStore, UserKey
from semantic.core.recommend.tracking import (
    UserUpdate,
    advance,
    archetype_scores,
    by_user,
    engagement_deltas,
    first_seen,
    user_node_states,
)
from semantic.core.recommend.values import SpaceRef


async def replay_journey(
    log: JourneyLog,
    space: SpaceRef,
    tenant: str,
    user_id: str,
    config: TrackConfig,
    *,
    leave_out: Set[str] = frozenset(),
) -> Journey:
    """A user's journey recomputed in ``space`` from the latest events of the log, but
    those whose id is in ``leave_out`` (a batch being tracked, logged already)."""
    logged = await log.logged_events(tenant, user_id, REPLAY_EVENTS)
    events = [e for e in logged if e.event_id not in leave_out]
    vectors = await log.node_vectors(
        space, {(tenant, e.node_id) for e in events}, config.vector_name
    )
    return replay(events, {node_id: v for (_, node_id), v in vectors.items()}, config)


class Tracker:
    """Stores user events and everything derived from them, one transaction per call."""

    def __init__(self, store: TrackStore, config: TrackConfig) -> None:
        self._store = store
        self._config = config

    @property
    def config(self) -> TrackConfig:
        """The weights and clocks in use."""
        return self._config

    async def track(self, space: SpaceRef, events: Sequence[UserEventRecord]) -> TrackResult:
        """Record ``events`` (one tenant or several) in one transaction; events of unknown
        nodes are left out and listed by index."""
        result = TrackResult()
        async with self._store.session() as session:
            node_ids = await session.resolve_events(events)
            known = [
                event if node_id == event.node_id else replace(event, node_id=node_id)
                for event, node_id in zip(events, node_ids, strict=True)
                if node_id is not None
            ]
            result.unknown = [i for i, node_id in enumerate(node_ids) if node_id is None]
            if not known:
                return result
            async with session.transaction():
                fresh, result.duplicates = first_seen(known, await session.log_events(known))
                result.accepted = len(fresh)
                if fresh:
                    await session.add_engagement(engagement_deltas(fresh, self._config))
                    await session.merge_user_nodes(user_node_states(fresh))
                    archetypes = await self._users(session, space, fresh)
                    scores = archetype_scores(fresh, archetypes, self._config)
                    if scores:
                        await session.add_archetype_scores(scores)
        return result

    async def _users(
        self, session: TrackSession, space: SpaceRef, events: list[UserEventRecord]
    ) -> Mapping[UserKey, str]:
        """Update each user's journey; returns each user's archetype (may be empty)."""
        config = self._config
        grouped = by_user(events)
        stored = await session.lock_users(list(grouped))
        vectors = await session.node_vectors(
            space,
            {(e.tenant, e.node_id) for e in events if event_weight(config, e)},
            config.vector_name,
        )
        archetypes: dict[UserKey, str] = {}
        updates = []
        for key, own in grouped.items():
            row = stored.get(key)
            journey = Journey.stored(row, space.id) if row is not None else Journey.empty()
            if row is not None and needs_replay(row, space.id):
                # The batch is in the log already; it is added below, once.
                journey = await replay_journey(
                    session, space, key[0], key[1], config, leave_out={e.event_id for e in own}
                )
            before = (row.archetype, row.archetype_source) if row is not None else (None, None)
            archetype, source = advance(journey, before, own, vectors, config)
            archetypes[key] = archetype or ""
            events_before = row.events if row is not None else 0
            updates.append(
                UserUpdate(
                    key[0], key[1], archetype, source, space.id, journey, events_before + len(own)
                )
            )
        await session.save_users(updates)
        return archetypes
