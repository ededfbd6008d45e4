"""Vectors and weights that would make similarity arithmetic overflow or underflow (NaN
scores, or PostgreSQL refusing the statement: INTERNAL) are refused up front, naming the
field, at every entry: the wire conversion, the store's dense search inputs, the fusion."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from semantic.common.errors import InvalidArgument
from semantic.core import fusion
from semantic.core.domain import (
    MAX_HYBRID_CANDIDATES,
    MAX_VECTOR_LENGTH,
    MAX_WEIGHT,
    MIN_TARGET_WEIGHT,
    MIN_VECTOR_LENGTH,
    HybridParams,
    VectorTarget,
    vector_problem,
)
from semantic.core.spaces import check_half_range
from semantic.store.postgres.dense_inputs import checked_targets, checked_vector
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb
from semantic.wire import convert
from semantic.wire.search import search_query

pytestmark = pytest.mark.unit
LIMITS = convert.Limits()
DEFAULTS = HybridParams(rrf_k=60, candidates=100)


@pytest.mark.parametrize(
    "values",
    [(1e-45,) * 384, (3.4e38,) * 384, (2e6,) + (0.0,) * 383, (5e-7,) + (0.0,) * 383],
)
def test_a_vector_too_long_or_too_short_for_float32_cosine_is_refused(
    values: tuple[float, ...],
) -> None:
    array = np.asarray(values, np.float32)
    assert "has length" in (vector_problem(array) or "")
    with pytest.raises(InvalidArgument, match=r"^vector: has length"):
        convert.vector_from_proto(cpb.Vector(values=values), "vector")
    with pytest.raises(InvalidArgument, match=r"^vector: has length"):
        checked_vector(array)


def test_lengths_inside_the_bounds_are_kept_and_score_as_numbers() -> None:
    for length in (MIN_VECTOR_LENGTH * 1.01, 1.0, MAX_VECTOR_LENGTH * 0.99):
        array = np.full(384, length / np.sqrt(384), np.float32)
        assert vector_problem(array) is None
        kept = convert.vector_from_proto(cpb.Vector(values=array.tolist()), "vector")
        # What the database computes: float32 squares summed, then their product's root.
        squares = np.float32(0)
        for x in kept:
            squares = np.float32(squares + x * x)
        assert np.isfinite(squares)
        assert squares > 0
    assert vector_problem(np.zeros(3, np.float32)) == "is all zeros (no direction to compare)"
    assert vector_problem(np.array([1.0, np.nan])) == "holds NaN or infinite values"


@pytest.mark.parametrize("weight", [1e308, 5e-324, MAX_WEIGHT * 1.001, MIN_TARGET_WEIGHT / 2])
def test_a_target_weight_out_of_bounds_is_refused(weight: float) -> None:
    with pytest.raises(InvalidArgument, match=r"^targets\[0\]\.weight: must be"):
        convert.targets_from_proto([pb.VectorTarget(name="content", weight=weight)], LIMITS)
    with pytest.raises(InvalidArgument, match=r"^targets\[0\]\.weight: must be between"):
        checked_targets([VectorTarget("content", weight)])


def test_target_weights_at_the_bounds_are_kept() -> None:
    targets = [
        pb.VectorTarget(name="content", weight=MIN_TARGET_WEIGHT),
        pb.VectorTarget(name="title", weight=MAX_WEIGHT),
    ]
    assert [t.weight for t in checked_targets(convert.targets_from_proto(targets, LIMITS))] == [
        MIN_TARGET_WEIGHT,
        MAX_WEIGHT,
    ]


@pytest.mark.parametrize("side", ["dense_weight", "keyword_weight"])
def test_a_hybrid_weight_above_the_bound_is_refused(side: str) -> None:
    weights = {"dense_weight": 1.0, "keyword_weight": 1.0, side: 1e308}
    with pytest.raises(InvalidArgument, match=rf"^hybrid\.{side}: must be a number between"):
        fusion.check_fusion(60, weights["dense_weight"], weights["keyword_weight"])
    fusion.check_fusion(60, MAX_WEIGHT, MAX_WEIGHT)


def test_a_half_precision_space_refuses_what_half_precision_rounds_away_or_cannot_hold() -> None:
    tiny = np.full(384, 1e-5, np.float32)  # a valid length (2e-4), but zeros in half
    assert vector_problem(tiny) is None
    with pytest.raises(InvalidArgument, match=r"^vector: has no component of 6.1e-05 or more"):
        check_half_range(tiny, "half", "vector")
    with pytest.raises(InvalidArgument, match=r"^vector: has a component beyond"):
        check_half_range(np.full(384, 7e4, np.float32), "half", "vector")
    check_half_range(tiny, "float32", "vector")  # a float32 index holds it
    one = tiny.copy()
    one[0] = 1e-4
    check_half_range(one, "half", "vector")


@pytest.mark.parametrize("candidates", [0, MAX_HYBRID_CANDIDATES + 1, 2**32 - 1])
def test_hybrid_candidates_out_of_bounds_are_refused_not_clamped(candidates: int) -> None:
    request = pb.SearchRequest(text="q", mode=pb.SEARCH_MODE_HYBRID)
    request.hybrid.candidates = candidates
    with pytest.raises(InvalidArgument, match=r"^hybrid\.candidates: must be between 1 and"):
        search_query(request, "", LIMITS, DEFAULTS)
    request.hybrid.candidates = MAX_HYBRID_CANDIDATES
    assert search_query(request, "", LIMITS, DEFAULTS).hybrid.candidates == MAX_HYBRID_CANDIDATES


def _problem_by_definition(vector: np.ndarray) -> str | None:
    """What ``vector_problem`` answers, computed the long way: every value finite, then
    the length in float64 against the bounds."""
    if not np.isfinite(vector).all():
        return "non-finite"
    length = float(np.linalg.norm(vector.astype(np.float64)))
    if length == 0 or not MIN_VECTOR_LENGTH <= length <= MAX_VECTOR_LENGTH:
        return "length"
    return None


_COMPONENTS = st.one_of(
    st.floats(width=32, allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1.0, max_value=1.0, width=32),
    st.sampled_from([0.0, 1e-45, 5e-7, 2e-6, 5.8e5, 6e5, 1e6, 3.4e38]),
)


@settings(max_examples=400, deadline=None)
@example([math.nan, 0.5, 0.5], np.float32, 1.0)
@example([0.5, math.inf, 0.5], np.float32, 1.0)
@example([-math.inf, 0.5], np.float32, 1.0)
@example([3.4e38, 1.0], np.float32, 1.0)
@example([0.0, 1e-45], np.float32, 1.0)
@given(
    st.lists(_COMPONENTS, min_size=1, max_size=64),
    st.sampled_from([np.float32, np.float64]),
    st.sampled_from([1e-7, 1e-6, 1.0, 1e6, 1.1e6]),
)
def test_the_one_pass_check_answers_as_the_definition(
    values: list[float], dtype: type, scale: float
) -> None:
    """The sum-of-squares shortcut never admits a vector the definition refuses (nor
    refuses one it admits), at the bounds' edges and with NaN or infinity anywhere."""
    with np.errstate(all="ignore"):
        vector = (np.asarray(values, dtype=np.float64) * scale).astype(dtype)
    expected = _problem_by_definition(vector)
    got = vector_problem(vector)
    if expected is None:
        assert got is None
    else:
        assert got is not None
        assert ("NaN or infinite" in got) == (expected == "non-finite")
