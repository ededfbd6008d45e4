"""Vectors a recommendation compares: unit length, the examples' query vector, the best
example score, and which journey items or examples a hit resembles."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from semantic.core.domain import assembled
from semantic.core.recommend.values import CandidateDetails, RecommendHit, Similar


def unit(vector: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``vector`` as float32 scaled to length 1 (a zero vector stays zero)."""
    array = np.asarray(vector, np.float32)
    norm = float(np.linalg.norm(array))
    return array / norm if norm > 0 else array


def average_vector(
    positives: Sequence[np.ndarray[Any, Any]], negatives: Sequence[np.ndarray[Any, Any]]
) -> np.ndarray[Any, Any]:
    """mean(P) + (mean(P) - mean(N)); mean(P) without negatives; -mean(N) without positives."""
    if positives and negatives:
        p, n = np.mean(positives, axis=0), np.mean(negatives, axis=0)
        return unit(p + (p - n))
    if positives:
        return unit(np.mean(positives, axis=0))
    return unit(-np.mean(negatives, axis=0))


def best_score(
    vector: np.ndarray[Any, Any],
    positives: Sequence[np.ndarray[Any, Any]],
    negatives: Sequence[np.ndarray[Any, Any]],
) -> float:
    """Best positive similarity if it beats the best negative one, else minus the latter."""
    best_pos = max((float(np.dot(vector, p)) for p in positives), default=-math.inf)
    best_neg = max((float(np.dot(vector, n)) for n in negatives), default=-math.inf)
    if best_pos > best_neg:
        return best_pos
    return -best_neg


def most_similar(
    items: Sequence[tuple[Similar, np.ndarray[Any, Any]]],
    matrix: np.ndarray[Any, Any],
    vector: np.ndarray[Any, Any],
    count: int,
) -> list[Similar]:
    """The ``count`` items most similar to ``vector``, with that similarity; ``matrix``
    holds the items' unit vectors as rows (``np.stack`` of them)."""
    sims = (matrix @ vector).tolist()
    order = sorted(range(len(sims)), key=lambda i: -sims[i])[:count]
    # assembled: dataclasses.replace takes three times as long, and this runs per hit
    return [assembled(Similar, items[i][0].__dict__, similarity=sims[i]) for i in order]


def explain_hits(
    hits: Sequence[RecommendHit],
    details: Mapping[str, CandidateDetails],
    journey: Sequence[tuple[Similar, np.ndarray[Any, Any]]],
    examples: tuple[
        Sequence[tuple[str, np.ndarray[Any, Any]]], Sequence[tuple[str, np.ndarray[Any, Any]]]
    ],
    count: int,
) -> None:
    """Set each hit's ``similar_to``: the ``count`` journey items or examples (positive,
    negative) its vector is most similar to."""
    positives, negatives = examples
    items: list[tuple[Similar, np.ndarray[Any, Any]]] = list(journey)
    for node_id, vector in positives:
        items.append((Similar(node_id, "", "", 0.0), vector))
    for node_id, vector in negatives:
        items.append((Similar(node_id, "", "", 0.0, negative=True), vector))
    if not items:
        return
    matrix = np.stack([v for _, v in items])
    for hit in hits:
        own = details[hit.node.id].vector
        if own is not None:
            hit.similar_to = most_similar(items, matrix, own, count)
