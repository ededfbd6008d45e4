"""Query expansion's vector arithmetic (semantic.core.expansion)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from semantic.core.domain import VectorTarget
from semantic.core.expansion import expanded, hit_vector


def _unit(values: list[float]) -> np.ndarray:
    array = np.asarray(values, np.float32)
    return array / np.linalg.norm(array)


def test_one_hit_moves_the_query_by_the_weight_then_scales_to_length_one() -> None:
    query = np.array([1.0, 0.0, 0.0], np.float32)
    hit = np.array([0.0, 1.0, 0.0], np.float32)
    assert np.allclose(expanded(query, [hit], 1.0), _unit([1, 1, 0]))
    assert np.allclose(expanded(query, [hit], 3.0), _unit([1, 3, 0]))


def test_several_hits_count_through_their_mean() -> None:
    query = np.array([1.0, 0.0, 0.0], np.float32)
    hits = [np.array([0.0, 1.0, 0.0], np.float32), np.array([0.0, 0.0, 1.0], np.float32)]
    assert np.allclose(expanded(query, hits, 2.0), _unit([1, 1, 1]))


def test_no_feedback_leaves_the_query_as_it_is() -> None:
    query = np.array([0.6, 0.8], np.float32)
    assert np.array_equal(expanded(query, [], 5.0), query)


def test_a_query_of_any_length_is_scaled_to_one_before_it_is_moved() -> None:
    hit = np.array([0.0, 1.0], np.float32)
    assert np.allclose(expanded(np.array([10.0, 0.0], np.float32), [hit], 1.0), _unit([1, 1]))


def test_feedback_opposite_the_query_at_weight_one_keeps_the_query() -> None:
    """q + (-q) has no direction: the query stays rather than becoming NaN."""
    query = np.array([1.0, 0.0], np.float32)
    assert np.allclose(expanded(query, [-query], 1.0), query)


def test_a_hit_vector_is_its_mean_vector_scaled_to_length_one() -> None:
    vector = hit_vector({"content": np.array([3.0, 4.0])}, (VectorTarget("content"),))
    assert vector is not None
    assert np.allclose(vector, [0.6, 0.8])


def test_a_hit_vector_of_several_targets_weighs_their_unit_vectors() -> None:
    named = {"title": np.array([2.0, 0.0]), "body": np.array([0.0, 5.0])}
    targets = (VectorTarget("title", 3.0), VectorTarget("body", 1.0))
    vector = hit_vector(named, targets)
    assert vector is not None
    assert np.allclose(vector, _unit([3, 1]))


def test_a_target_the_hit_lacks_is_left_out() -> None:
    targets = (VectorTarget("title", 3.0), VectorTarget("body", 1.0))
    vector = hit_vector({"body": np.array([0.0, 5.0])}, targets)
    assert vector is not None
    assert np.allclose(vector, [0.0, 1.0])


@pytest.mark.parametrize(
    "named",
    [{}, {"other": np.array([1.0, 0.0])}, {"content": np.zeros(2)}],
    ids=["nothing", "another name", "zero vector"],
)
def test_a_hit_without_a_usable_vector_gives_no_feedback(named: dict[str, np.ndarray]) -> None:
    assert hit_vector(named, (VectorTarget("content"),)) is None


def test_targets_of_weight_zero_give_no_feedback() -> None:
    named = {"content": np.array([1.0, 0.0])}
    assert hit_vector(named, (VectorTarget("content", 0.0),)) is None


finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)


@given(
    query=arrays(np.float32, 8, elements=finite),
    hits=st.lists(arrays(np.float32, 8, elements=finite), max_size=4),
    weight=st.floats(0, 100),
)
def test_the_expanded_query_is_finite_of_length_one_or_the_query_itself(
    query: np.ndarray, hits: list[np.ndarray], weight: float
) -> None:
    feedback = [v for h in hits if (v := hit_vector({"c": h}, (VectorTarget("c"),))) is not None]
    out = expanded(query, feedback, weight)
    assert np.all(np.isfinite(out))
    if feedback and np.linalg.norm(query) > 0:
        assert np.linalg.norm(out) == pytest.approx(1.0, abs=1e-4)
    else:
        assert np.array_equal(out, query)
