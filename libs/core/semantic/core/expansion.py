"""Query expansion by pseudo-relevance feedback, the vector arithmetic of it (pure).

A hybrid search fuses its dense and keyword candidates once, takes the first
``expansion_docs`` fused hits as relevant, and searches the dense side again with

    q' = unit(q + weight * mean(f_1 .. f_m))

where ``q`` is the unit query vector and ``f_i`` the unit vector of hit i: for one target, the
mean of the hit's chunk vectors scaled to length 1; for several named targets, the
target-weighted mean of those unit vectors (targets the hit lacks left out), scaled to length 1.
The second dense list is fused with the same keyword candidates. Rocchio's formula without
negative feedback; on NFCorpus it moves hybrid nDCG@10 from 0.354 to 0.362 (README_vector.md,
"Hybrid fusions on NFCorpus").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from semantic.core.domain import VectorTarget

Vector = np.ndarray[Any, Any]


def _unit(vector: Vector) -> Vector | None:
    array = np.asarray(vector, np.float32)
    norm = float(np.linalg.norm(array))
    return array / norm if norm > 0 and np.isfinite(norm) else None


def hit_vector(named: Mapping[str, Vector], targets: Sequence[VectorTarget]) -> Vector | None:
    """The feedback vector of one hit from its mean vector per name (``named``): the
    target-weighted mean of the unit vectors it has, as a unit vector; None when it has none
    of the targets (or only zero vectors, or the weights of those it has sum to 0)."""
    parts = [
        (target.weight, unit)
        for target in targets
        if target.name in named and (unit := _unit(named[target.name])) is not None
    ]
    total = sum(weight for weight, _ in parts)
    if not parts or total <= 0:
        return None
    return _unit(np.sum([weight * unit for weight, unit in parts], axis=0) / total)


def expanded(query: Vector, feedback: Sequence[Vector], weight: float) -> Vector:
    """``unit(unit(query) + weight * mean(feedback))`` (the module doc); ``query`` unchanged
    when there is no feedback or the sum has no direction."""
    base = _unit(query)
    if base is None or not feedback:
        return np.asarray(query, np.float32)
    moved = _unit(base + weight * np.mean(np.stack(feedback), axis=0))
    return base if moved is None else moved
