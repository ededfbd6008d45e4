"""k-means for derived archetypes: deterministic with a seed, every point with its nearest
centroid, unit centroids; and the users too few or without a journey are not clustered."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semantic.core.recommend.archetypes import PREFIX, cluster_journeys
from semantic.core.recommend.clustering import kmeans, nearest_centroid, unit_rows
from semantic.core.recommend.events import Action, TrackConfig

pytestmark = pytest.mark.unit
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


def _points(seed: int, n: int, dim: int = 8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    units, _ = unit_rows(rng.normal(size=(n, dim)).astype(np.float32))
    return units


@settings(max_examples=25)
@given(st.integers(0, 2**16), st.integers(4, 60), st.integers(2, 6))
def test_kmeans_is_deterministic_and_assigns_each_point_to_its_nearest_centroid(
    seed: int, n: int, k: int
) -> None:
    points = _points(seed, n)
    centroids, labels = kmeans(points, k)
    again_centroids, again_labels = kmeans(points, k)
    assert np.array_equal(labels, again_labels)
    assert np.array_equal(centroids, again_centroids)
    assert centroids.shape == (k, points.shape[1])
    assert np.allclose(np.linalg.norm(centroids, axis=1), 1.0, atol=1e-5)
    similarity = points @ centroids.T
    chosen = similarity[np.arange(n), labels]
    assert np.all(chosen >= similarity.max(axis=1) - 1e-5)


def test_kmeans_separates_two_clear_groups() -> None:
    rng = np.random.default_rng(1)
    left = np.array([1.0, 0.0]) + rng.normal(scale=0.05, size=(10, 2))
    right = np.array([0.0, 1.0]) + rng.normal(scale=0.05, size=(10, 2))
    points, _ = unit_rows(np.vstack([left, right]).astype(np.float32))
    _, labels = kmeans(points, 2)
    assert len(set(labels[:10])) == 1
    assert len(set(labels[10:])) == 1
    assert labels[0] != labels[10]


def test_the_nearest_centroid_is_the_most_similar_label() -> None:
    labelled = [("x", np.array([1.0, 0.0])), ("y", np.array([0.0, 1.0]))]
    assert nearest_centroid(labelled, np.array([0.2, 0.9], np.float32)) == "y"
    assert nearest_centroid([], np.array([0.2, 0.9], np.float32)) == ""


def test_zero_journeys_are_left_out_and_fewer_than_four_users_make_no_clusters() -> None:
    journeys = [("u1", np.ones(4)), ("u2", np.zeros(4)), ("u3", -np.ones(4))]
    users, derived = cluster_journeys(journeys, 8, CONFIG)
    assert (users, derived) == (2, None)


def test_derived_clusters_label_every_user_and_count_their_members() -> None:
    points = _points(3, 12)
    journeys = [(f"u{i}", 5.0 * p) for i, p in enumerate(points)]
    users, derived = cluster_journeys(journeys, 8, CONFIG)
    assert users == 12
    assert derived is not None
    assert len(derived.labels) == 6  # at most k, at least two users per cluster
    assert all(label.startswith(PREFIX) for label in derived.labels)
    assert sum(derived.members) == 12
    assert sorted(u for u, _ in derived.assignments) == sorted(u for u, _ in journeys)
    assert set(derived.weights) == {Action.VIEW, Action.CLICK, Action.LIKE, Action.CONVERT}
