"""A user's journey: a time-decayed, action-weighted sum of node vectors,

    S(t) = S(t0) * 0.5 ** ((t - t0) / half_life) + weight * v_node      (v_node unit length)
    W(t) = W(t0) * 0.5 ** ((t - t0) / half_life) + |weight|

and the journey vector is S / |S| (W is kept for the record: how much evidence there is).
An event older than the journey's clock is added with its own decay instead, so arrival
order does not matter. A dismiss has a negative weight and pushes the sum away.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from semantic.core.recommend.events import Action, TrackConfig, journey_weight

REPLAY_EVENTS = 1000
"""How many of a user's latest logged events rebuild a journey in another space."""


def decay(hours: float, half_life_hours: float) -> float:
    """The factor a pull keeps after ``hours`` (>= 0): halves every ``half_life_hours``."""
    return float(0.5 ** (hours / half_life_hours))


@dataclass(frozen=True)
class StoredUser:
    """A user's stored row: archetype, journey (in ``space_id``) and event count."""

    archetype: str | None
    archetype_source: str | None
    space_id: int | None
    journey_sum: np.ndarray[Any, Any] | None
    journey_weight: float
    journey_at: datetime | None
    events: int


@dataclass(frozen=True)
class LoggedEvent:
    """One event of the user-event log, as a replay reads it."""

    event_id: str
    node_id: str
    action: Action
    weight: float | None
    occurred_at: datetime


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
    def stored(cls, user: StoredUser, space_id: int) -> Journey:
        """The stored journey (empty when it belongs to another space)."""
        if user.journey_sum is None or user.space_id != space_id:
            return cls.empty()
        return cls(np.asarray(user.journey_sum, np.float64), user.journey_weight, user.journey_at)

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
            kept = decay(hours, half_life_h)
            self.sum = self.sum * kept + weight * unit
            self.weight = self.weight * kept + abs(weight)
            self.at = at
        else:  # an older event: it enters already decayed
            kept = decay(-hours, half_life_h)
            self.sum = self.sum + weight * kept * unit
            self.weight = self.weight + abs(weight) * kept

    def vector(self) -> np.ndarray[Any, Any] | None:
        """The unit journey vector, or None without history (or a zero sum)."""
        if self.sum is None:
            return None
        norm = float(np.linalg.norm(self.sum))
        if norm < 1e-9 or not math.isfinite(norm):
            return None
        return (self.sum / norm).astype(np.float32)


def needs_replay(user: StoredUser, space_id: int) -> bool:
    """True when the stored journey belongs to another space (after a model switch)."""
    return user.space_id not in (None, space_id)


def replay(
    events: Sequence[LoggedEvent],
    vectors: Mapping[str, np.ndarray[Any, Any]],
    config: TrackConfig,
) -> Journey:
    """The journey of ``events`` (newest first, as logged) from the node vectors by id."""
    journey = Journey.empty()
    for event in reversed(events):
        weight = journey_weight(config, event.action, event.weight)
        vector = vectors.get(event.node_id)
        if weight and vector is not None:
            journey.add(vector, weight, event.occurred_at, config.half_life_hours)
    return journey
