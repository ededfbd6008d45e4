"""Cosine k-means over unit vectors (k-means++ seeding, fixed seed) and the nearest centroid."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def kmeans(
    vectors: np.ndarray[Any, Any], k: int, *, seed: int = 7, rounds: int = 25
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """(centroids [k, d] unit length, label per row) of cosine k-means on unit rows."""
    rng = np.random.default_rng(seed)
    n = vectors.shape[0]
    centroids = [vectors[int(rng.integers(n))]]
    for _ in range(1, k):  # k-means++: far from the chosen ones, with probability
        distance = 1 - np.max(vectors @ np.stack(centroids).T, axis=1)
        weights = np.clip(distance, 0, None) ** 2
        total = float(weights.sum())
        index = int(rng.choice(n, p=weights / total)) if total > 0 else int(rng.integers(n))
        centroids.append(vectors[index])
    matrix = np.stack(centroids)
    labels = np.zeros(n, dtype=np.int64)
    for _ in range(rounds):
        labels = np.argmax(vectors @ matrix.T, axis=1)
        moved = matrix.copy()
        for cluster in range(k):
            members = vectors[labels == cluster]
            if len(members):
                mean = members.mean(axis=0)
                moved[cluster] = mean / max(float(np.linalg.norm(mean)), 1e-12)
        if np.allclose(moved, matrix):
            break
        matrix = moved
    return matrix, labels


def unit_rows(vectors: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """(the rows of non-zero length scaled to unit length, the mask of those rows)."""
    if not len(vectors):
        return vectors, np.zeros(0, dtype=bool)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    keep = norms[:, 0] > 1e-9
    return vectors[keep] / norms[keep], keep


def nearest_centroid(
    labelled: Sequence[tuple[str, np.ndarray[Any, Any]]], vector: np.ndarray[Any, Any]
) -> str:
    """The label of the centroid most similar (dot product) to ``vector``; '' without any."""
    if not labelled:
        return ""
    centroids = np.asarray([c for _, c in labelled], np.float32)
    return labelled[int(np.argmax(centroids @ vector))][0]
