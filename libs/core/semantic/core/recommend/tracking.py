"""What a batch of new user events adds up to: engagement counts per node, the user-node
state (seen, converted, dismissed, strongest action), journeys moved, and the archetypes'
priors. Pure functions; :class:`semantic.core.recommend.tracker.Tracker` stores the rows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from semantic.core.recommend.events import Action, TrackConfig, UserEventRecord, event_weight
from semantic.core.recommend.journey import Journey

DISMISS_POPULARITY = 2.0
"""What a dismiss takes off a node's popularity."""
_COUNTED = {
    Action.VIEW: "views",
    Action.CLICK: "clicks",
    Action.LIKE: "likes",
    Action.CONVERT: "conversions",
    Action.DISMISS: "dismissals",
}
_SEEN = (Action.VIEW, Action.CLICK, Action.LIKE, Action.CONVERT)


@dataclass
class EngagementDelta:
    """What a batch adds to one node's engagement counts and popularity."""

    tenant: str
    node_id: str
    last_at: datetime
    impressions: int = 0
    views: int = 0
    clicks: int = 0
    likes: int = 0
    conversions: int = 0
    dismissals: int = 0
    popularity: float = 0.0


@dataclass
class UserNodeState:
    """What a batch says of one user and one node (merged with the stored state by OR/max)."""

    tenant: str
    user_id: str
    node_id: str
    last_at: datetime
    seen: bool = False
    converted: bool = False
    dismissed: bool = False
    strongest: int = 0


@dataclass(frozen=True)
class UserUpdate:
    """A user's row after a batch: archetype, journey in ``space_id``, event count."""

    tenant: str
    user_id: str
    archetype: str | None
    archetype_source: str | None
    space_id: int
    journey: Journey
    events: int


def first_seen(
    events: Sequence[UserEventRecord], inserted: Set[tuple[str, str]]
) -> tuple[list[UserEventRecord], int]:
    """(the events whose (tenant, event id) was newly inserted, once each; how many others
    there were: duplicates of logged events or within the batch)."""
    fresh: list[UserEventRecord] = []
    taken: set[tuple[str, str]] = set()
    duplicates = 0
    for event in events:
        key = (event.tenant, event.event_id)
        if key in inserted and key not in taken:
            fresh.append(event)
            taken.add(key)
        else:
            duplicates += 1
    return fresh, duplicates


def engagement_deltas(
    events: Sequence[UserEventRecord], config: TrackConfig
) -> list[EngagementDelta]:
    """One delta per (tenant, node), in key order."""
    deltas: dict[tuple[str, str], EngagementDelta] = {}
    for event in events:
        key = (event.tenant, event.node_id)
        delta = deltas.setdefault(
            key, EngagementDelta(event.tenant, event.node_id, event.occurred_at)
        )
        if event.action in (Action.IMPRESSION, Action.VIEW):
            delta.impressions += 1
        column = _COUNTED.get(event.action)
        if column is not None:
            setattr(delta, column, getattr(delta, column) + 1)
        delta.popularity += max(0.0, event_weight(config, event)) - (
            DISMISS_POPULARITY if event.action is Action.DISMISS else 0.0
        )
        delta.last_at = max(delta.last_at, event.occurred_at)
    return [deltas[k] for k in sorted(deltas)]


def user_node_states(events: Sequence[UserEventRecord]) -> list[UserNodeState]:
    """One state per (tenant, user, node), in key order."""
    states: dict[tuple[str, str, str], UserNodeState] = {}
    for event in events:
        key = (event.tenant, event.user_id, event.node_id)
        state = states.setdefault(key, UserNodeState(*key, last_at=event.occurred_at))
        state.seen |= event.action in _SEEN
        state.converted |= event.action is Action.CONVERT
        state.dismissed |= event.action is Action.DISMISS
        if event.action is not Action.IMPRESSION:
            state.strongest = max(state.strongest, int(event.action))
        state.last_at = max(state.last_at, event.occurred_at)
    return [states[k] for k in sorted(states)]


def by_user(events: Sequence[UserEventRecord]) -> dict[tuple[str, str], list[UserEventRecord]]:
    """The events of each (tenant, user), in key order."""
    grouped: dict[tuple[str, str], list[UserEventRecord]] = defaultdict(list)
    for event in events:
        grouped[(event.tenant, event.user_id)].append(event)
    return {key: grouped[key] for key in sorted(grouped)}


def advance(
    journey: Journey,
    archetype: tuple[str | None, str | None],
    events: Sequence[UserEventRecord],
    vectors: Mapping[tuple[str, str], np.ndarray[Any, Any]],
    config: TrackConfig,
) -> tuple[str | None, str | None]:
    """Move ``journey`` by one user's ``events`` in time order; returns the user's
    (archetype, its source) after them: an event naming an archetype sets a given one."""
    label, source = archetype
    for event in sorted(events, key=lambda e: e.occurred_at):
        weight = event_weight(config, event)
        vector = vectors.get((event.tenant, event.node_id))
        if weight and vector is not None:
            journey.add(vector, weight, event.occurred_at, config.half_life_hours)
        if event.archetype:
            label, source = event.archetype, "given"
    return label, source


def archetype_scores(
    events: Sequence[UserEventRecord],
    archetypes: Mapping[tuple[str, str], str],
    config: TrackConfig,
) -> dict[tuple[str, str, str], float]:
    """What each positive event adds to its user's archetype's prior of its node, keyed
    (tenant, archetype, node id), in key order."""
    scores: dict[tuple[str, str, str], float] = defaultdict(float)
    for event in events:
        label = archetypes.get((event.tenant, event.user_id), "")
        weight = event_weight(config, event)
        if label and weight > 0:
            scores[(event.tenant, label, event.node_id)] += weight
    return {key: scores[key] for key in sorted(scores)}
