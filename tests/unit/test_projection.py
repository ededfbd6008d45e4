"""The 2-D projection of Explore: PCA that is exact on simple shapes, bounded in its
explained variance, deterministic in its signs, and calm on degenerate input."""

from __future__ import annotations

import numpy as np
import pytest

from semantic.core.projection import pca_2d


def test_points_on_a_line_project_onto_the_first_axis_alone() -> None:
    direction = np.array([3.0, -1.0, 2.0, 0.5])
    steps = np.array([-2.0, -1.0, 0.0, 1.5, 4.0])
    rows = np.array([7.0, 1.0, -3.0, 2.0]) + steps[:, None] * direction
    projection = pca_2d(rows)
    x, y = projection.coordinates[:, 0], projection.coordinates[:, 1]
    assert np.allclose(y, 0.0, atol=1e-9)
    # Distances along the line are kept (the axis has unit length), up to the shared sign.
    expected = (steps - steps.mean()) * np.linalg.norm(direction)
    assert np.allclose(np.abs(x), np.abs(expected))
    assert projection.explained_variance[0] == pytest.approx(1.0)
    assert projection.explained_variance[1] == 0.0
    assert projection.method == "pca"


def test_a_plane_is_recovered_with_its_variance_split_by_spread() -> None:
    rng = np.random.default_rng(7)
    plane = np.linalg.qr(rng.normal(size=(16, 2)))[0].T  # two orthonormal directions
    weights = rng.normal(size=(200, 2)) * np.array([5.0, 1.0])
    rows = weights @ plane
    projection = pca_2d(rows)
    first, second = projection.explained_variance
    assert first > second > 0.0
    assert first + second == pytest.approx(1.0)
    # The map keeps every pairwise distance of points lying in a plane.
    original = np.linalg.norm(rows[:, None] - rows[None], axis=-1)
    mapped = projection.coordinates
    assert np.allclose(np.linalg.norm(mapped[:, None] - mapped[None], axis=-1), original)


def test_explained_variance_is_two_fractions_summing_to_at_most_one() -> None:
    rng = np.random.default_rng(11)
    for dim in (2, 3, 50, 384):
        rows = rng.normal(size=(64, dim)).astype(np.float32)
        fractions = pca_2d(rows).explained_variance
        assert len(fractions) == 2
        assert all(0.0 <= f <= 1.0 for f in fractions)
        assert sum(fractions) <= 1.0
        assert fractions[0] >= fractions[1]


def test_the_same_rows_give_the_same_map_and_axes_have_a_fixed_sign() -> None:
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(40, 24))
    first, again = pca_2d(rows), pca_2d(rows.copy())
    assert np.array_equal(first.coordinates, again.coordinates)
    assert first.explained_variance == again.explained_variance
    # A mirrored data set differs from the original only by a sign an SVD may pick; the
    # fixed sign rule gives both the same orientation of their own axes.
    flipped = pca_2d(-rows)
    assert np.allclose(np.abs(flipped.coordinates), np.abs(first.coordinates))
    loading = np.linalg.lstsq(rows - rows.mean(axis=0), first.coordinates, rcond=None)[0]
    for k in range(2):
        assert loading[np.argmax(np.abs(loading[:, k])), k] > 0


@pytest.mark.parametrize(
    "rows",
    [
        np.zeros((0, 8)),  # nothing sampled
        np.ones((1, 8)),  # one point
        np.tile(np.arange(8.0), (5, 1)),  # identical points
        np.zeros((3, 0)),  # no dimensions
    ],
    ids=["empty", "one-row", "identical", "no-dims"],
)
def test_degenerate_samples_map_to_the_origin_with_no_variance(rows: np.ndarray) -> None:
    projection = pca_2d(rows)
    assert projection.coordinates.shape == (rows.shape[0], 2)
    assert np.all(projection.coordinates == 0.0)
    assert projection.explained_variance == (0.0, 0.0)


def test_coordinates_are_finite_for_unit_vectors_like_the_embedder_makes() -> None:
    rng = np.random.default_rng(5)
    rows = rng.normal(size=(500, 384)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    projection = pca_2d(rows)
    assert np.isfinite(projection.coordinates).all()
    assert projection.coordinates.dtype == np.float64


def test_a_matrix_that_is_not_two_dimensional_is_refused() -> None:
    with pytest.raises(ValueError, match="2-D matrix"):
        pca_2d(np.zeros(5))
