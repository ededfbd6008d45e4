"""User events: the actions, one validated event, tracking's configuration and outcome."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum
from typing import Any

from semantic.common.errors import InvalidArgument
from semantic.core.domain import DEFAULT_VECTOR

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
    """Weights and clocks of tracking (built from the settings, which hold the defaults)."""

    weights: Mapping[Action, float]
    half_life_hours: float
    max_future_s: float
    vector_name: str = DEFAULT_VECTOR


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


def journey_weight(config: TrackConfig, action: Action, weight: float | None) -> float:
    """The weight an event moves the journey by: its own, else its action's (0 for
    impressions, whatever they carry)."""
    if action is Action.IMPRESSION:
        return 0.0
    return float(weight if weight is not None else config.weights[action])


def event_weight(config: TrackConfig, event: UserEventRecord) -> float:
    """:func:`journey_weight` of one event."""
    return journey_weight(config, event.action, event.weight)


def check_time(occurred_at: datetime, now: datetime, max_future_s: float, field_name: str) -> None:
    """INVALID_ARGUMENT for a time too far in the future."""
    if occurred_at > now + timedelta(seconds=max_future_s):
        raise InvalidArgument(
            field_name, f"is more than {max_future_s:g} s in the future ({occurred_at.isoformat()})"
        )
