"""Vectors to a 2-D map: principal component analysis, pure and deterministic.

The rows are centred on their mean and the centred matrix is decomposed by SVD
(``numpy.linalg.svd``); the first two right singular vectors are the axes and each row's
coordinates are its projections on them. The fraction of the sample's variance along an
axis is its squared singular value over the sum of all of them, so the two fractions are
each in [0, 1] and sum to at most 1.

An SVD axis is only defined up to its sign; each axis is turned so that its loading of
largest magnitude is positive, which makes the map the same every time for the same
rows. Degenerate inputs give zeros rather than failing: no rows, one row, identical
rows, or fewer than two directions of variance (the missing axis is all zeros).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

AXES = 2
"""Dimensions of the map."""


@dataclass(frozen=True)
class Projection:
    """Coordinates of each row (``[n, 2]`` float64) and the variance fraction per axis."""

    coordinates: np.ndarray[Any, Any]
    explained_variance: tuple[float, float]
    method: str = "pca"


def pca_2d(rows: np.ndarray[Any, Any]) -> Projection:
    """The rows (``[n, dim]``) projected on their first two principal components."""
    matrix = np.asarray(rows, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"expected a 2-D matrix of rows, got shape {matrix.shape}")
    n = matrix.shape[0]
    coordinates = np.zeros((n, AXES), dtype=np.float64)
    if n < 2 or matrix.shape[1] == 0:
        return Projection(coordinates, (0.0, 0.0))
    centred = matrix - matrix.mean(axis=0)
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    variance = singular**2
    total = float(variance.sum())
    if total <= 0.0 or not np.isfinite(total):
        return Projection(coordinates, (0.0, 0.0))
    kept = min(AXES, axes.shape[0])
    fractions = [0.0, 0.0]
    for k in range(kept):
        if variance[k] <= total * 1e-12:
            continue  # no variance along this axis: leave it at zero
        axis = axes[k] * _sign(axes[k])
        coordinates[:, k] = centred @ axis
        fractions[k] = min(1.0, float(variance[k] / total))
    # Rounding must not push the sum over 1.
    return Projection(coordinates, (fractions[0], max(0.0, min(fractions[1], 1.0 - fractions[0]))))


def _sign(axis: np.ndarray[Any, Any]) -> float:
    """+1 or -1: what makes the axis' loading of largest magnitude positive."""
    return 1.0 if axis[int(np.argmax(np.abs(axis)))] >= 0 else -1.0
