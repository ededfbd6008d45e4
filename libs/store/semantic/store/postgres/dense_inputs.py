"""What a dense search accepts (``dense.dense_search``): its targets and its query vector,
refused as InvalidArgument naming the field."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from semantic.common.errors import InvalidArgument
from semantic.core.domain import (
    MAX_TARGETS,
    MAX_WEIGHT,
    MIN_TARGET_WEIGHT,
    VectorTarget,
    vector_problem,
)


def checked_targets(targets: Sequence[VectorTarget]) -> list[VectorTarget]:
    """The targets of a dense search, each named once, weighted within
    [``MIN_TARGET_WEIGHT``, ``MAX_WEIGHT``]."""
    if not targets:
        raise InvalidArgument("targets", "name at least one vector to search")
    if len(targets) > MAX_TARGETS:
        raise InvalidArgument("targets", f"at most {MAX_TARGETS} vectors may be searched at once")
    seen: set[str] = set()
    for i, target in enumerate(targets):
        if not target.name or "\x00" in target.name:
            raise InvalidArgument(f"targets[{i}].name", "must be a non-empty name")
        if target.name in seen:
            raise InvalidArgument(f"targets[{i}].name", f"{target.name!r} is named twice")
        if not (math.isfinite(target.weight) and MIN_TARGET_WEIGHT <= target.weight <= MAX_WEIGHT):
            raise InvalidArgument(
                f"targets[{i}].weight",
                f"must be between {MIN_TARGET_WEIGHT:g} and {MAX_WEIGHT:g}",
            )
        seen.add(target.name)
    return list(targets)


def checked_vector(vector: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """A query vector as float32: one dimension, comparable by cosine
    (``domain.vector_problem``)."""
    q = np.asarray(vector, dtype=np.float32)
    if q.ndim != 1 or q.size == 0:
        raise InvalidArgument("vector", "must be a non-empty list of numbers")
    problem = vector_problem(q)
    if problem is not None:
        raise InvalidArgument("vector", problem)
    return q
