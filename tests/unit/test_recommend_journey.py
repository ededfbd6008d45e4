"""Journey maths and what a batch of events adds up to: decay is monotonic and halves per
half-life, arrival order does not matter, replay equals tracking, and the per-node,
per-user and per-archetype rows count each event once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from semantic.core.recommend.events import Action, TrackConfig, UserEventRecord, event_weight
from semantic.core.recommend.journey import (
    Journey,
    LoggedEvent,
    StoredUser,
    decay,
    needs_replay,
    replay,
)
from semantic.core.recommend.tracking import (
    advance,
    archetype_scores,
    engagement_deltas,
    first_seen,
    user_node_states,
)

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
VECTORS = {
    "a": np.array([1.0, 0.0, 0.0]),
    "b": np.array([0.0, 1.0, 0.0]),
    "c": np.array([0.0, 0.0, 2.0]),
}


def _event(
    node: str, action: Action, hours: float, *, user: str = "u", event_id: str = "", **extra: object
) -> UserEventRecord:
    return UserEventRecord(
        event_id=event_id or f"{user}-{node}-{int(action)}-{hours}",
        user_id=user,
        tenant="t",
        node_id=node,
        slug="",
        action=action,
        occurred_at=T0 + timedelta(hours=hours),
        **extra,  # type: ignore[arg-type]
    )


@given(st.floats(0, 1e4), st.floats(0, 1e4), st.floats(0.1, 1e4))
def test_decay_is_monotonic_and_within_zero_and_one(a: float, b: float, half_life: float) -> None:
    early, late = min(a, b), max(a, b)
    assert 0.0 <= decay(late, half_life) <= decay(early, half_life) <= 1.0


def test_decay_halves_every_half_life() -> None:
    assert decay(0, 72) == 1.0
    assert decay(72, 72) == pytest.approx(0.5)
    assert decay(144, 72) == pytest.approx(0.25)


def test_a_later_event_decays_the_earlier_pull_and_the_weight() -> None:
    journey = Journey.empty()
    journey.add(VECTORS["a"], 1.0, T0, 72.0)
    journey.add(VECTORS["b"], 1.0, T0 + timedelta(hours=72), 72.0)
    assert journey.sum is not None
    assert np.allclose(journey.sum, [0.5, 1.0, 0.0])
    assert journey.weight == pytest.approx(1.5)
    assert journey.at == T0 + timedelta(hours=72)


@given(st.permutations(list(range(5))))
def test_arrival_order_does_not_change_the_journey(order: list[int]) -> None:
    steps = [
        ("a", 1.0, 0.0),
        ("b", 2.0, 10.0),
        ("c", 3.0, 30.0),
        ("a", -2.0, 50.0),
        ("b", 1.0, 80.0),
    ]
    reference, shuffled = Journey.empty(), Journey.empty()
    for node, weight, hours in steps:
        reference.add(VECTORS[node], weight, T0 + timedelta(hours=hours), 72.0)
    for i in order:
        node, weight, hours = steps[i]
        shuffled.add(VECTORS[node], weight, T0 + timedelta(hours=hours), 72.0)
    assert reference.sum is not None
    assert shuffled.sum is not None
    # the clock is the latest event's either way, so the sums agree
    assert np.allclose(reference.sum, shuffled.sum)
    assert reference.weight == pytest.approx(shuffled.weight)


def test_a_dismiss_pushes_the_journey_away_and_a_zero_sum_has_no_vector() -> None:
    journey = Journey.empty()
    assert journey.vector() is None
    journey.add(VECTORS["a"], 1.0, T0, 72.0)
    journey.add(VECTORS["a"], -1.0, T0, 72.0)
    assert journey.vector() is None
    journey.add(VECTORS["b"], -2.0, T0, 72.0)
    vector = journey.vector()
    assert vector is not None
    assert vector[1] < 0
    assert float(np.linalg.norm(vector)) == pytest.approx(1.0)


def test_a_journey_of_another_space_is_empty_and_needs_a_replay() -> None:
    user = StoredUser(None, None, 1, np.ones(3), 2.0, T0, 4)
    assert Journey.stored(user, 1).sum is not None
    assert Journey.stored(user, 2).sum is None
    assert needs_replay(user, 2)
    assert not needs_replay(user, 1)


def test_replaying_the_log_gives_the_journey_tracking_built() -> None:
    events = [
        _event("a", Action.VIEW, 0),
        _event("b", Action.IMPRESSION, 1),
        _event("c", Action.LIKE, 5, weight=7.0),
        _event("b", Action.DISMISS, 9),
    ]
    tracked = Journey.empty()
    advance(tracked, (None, None), events, {("t", k): v for k, v in VECTORS.items()}, CONFIG)
    logged = [
        LoggedEvent(e.event_id, e.node_id, e.action, e.weight, e.occurred_at)
        for e in reversed(events)
    ]
    replayed = replay(logged, VECTORS, CONFIG)
    assert tracked.sum is not None
    assert replayed.sum is not None
    assert np.allclose(tracked.sum, replayed.sum)
    assert tracked.weight == pytest.approx(replayed.weight)


def test_impressions_never_move_the_journey_and_a_given_weight_wins() -> None:
    assert event_weight(CONFIG, _event("a", Action.IMPRESSION, 0, weight=9.0)) == 0.0
    assert event_weight(CONFIG, _event("a", Action.CLICK, 0)) == 2.0
    assert event_weight(CONFIG, _event("a", Action.CLICK, 0, weight=0.5)) == 0.5


def test_an_event_naming_an_archetype_sets_a_given_one() -> None:
    journey = Journey.empty()
    events = [_event("a", Action.VIEW, 0, archetype="reader"), _event("b", Action.VIEW, 1)]
    assert advance(journey, ("derived_1", "derived"), events, {}, CONFIG) == ("reader", "given")
    assert advance(journey, ("derived_1", "derived"), events[1:], {}, CONFIG) == (
        "derived_1",
        "derived",
    )


def test_duplicates_within_a_batch_and_of_the_log_are_counted_once() -> None:
    one, again, logged = (
        _event("a", Action.VIEW, 0, event_id="e1"),
        _event("a", Action.VIEW, 0, event_id="e1"),
        _event("b", Action.VIEW, 0, event_id="e2"),
    )
    fresh, duplicates = first_seen([one, again, logged], {("t", "e1")})
    assert fresh == [one]
    assert duplicates == 2


def test_engagement_deltas_count_each_action_once_per_node() -> None:
    events = [
        _event("a", Action.IMPRESSION, 0),
        _event("a", Action.VIEW, 1),
        _event("a", Action.CLICK, 2),
        _event("a", Action.DISMISS, 3),
        _event("b", Action.CONVERT, 4),
    ]
    a, b = engagement_deltas(events, CONFIG)
    assert (a.node_id, a.impressions, a.views, a.clicks, a.dismissals) == ("a", 2, 1, 1, 1)
    assert a.popularity == pytest.approx(1.0 + 2.0 - 2.0)
    assert a.last_at == T0 + timedelta(hours=3)
    assert (b.node_id, b.conversions, b.impressions, b.popularity) == ("b", 1, 0, 5.0)


def test_user_node_state_keeps_flags_and_the_strongest_action() -> None:
    events = [
        _event("a", Action.IMPRESSION, 0),
        _event("a", Action.LIKE, 1),
        _event("a", Action.VIEW, 2),
    ]
    (state,) = user_node_states(events)
    assert (state.seen, state.converted, state.dismissed) == (True, False, False)
    assert state.strongest == int(Action.LIKE)
    (shown,) = user_node_states(events[:1])
    assert (shown.seen, shown.strongest) == (False, 0)


def test_archetype_scores_take_positive_events_of_users_with_an_archetype() -> None:
    events = [
        _event("a", Action.CLICK, 0, user="u1"),
        _event("a", Action.DISMISS, 1, user="u1"),
        _event("a", Action.VIEW, 2, user="u2"),
        _event("b", Action.LIKE, 3, user="u3"),
    ]
    scores = archetype_scores(events, {("t", "u1"): "x", ("t", "u2"): "x", ("t", "u3"): ""}, CONFIG)
    assert scores == {("t", "x", "a"): 3.0}
