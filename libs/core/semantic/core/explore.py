"""A 2-D map of a sample of one tenant's vectors: the use case behind Admin Explore.

The store draws the sample (``ExploreStore.sample``): the vector rows of a tenant, one
vector name and optionally some content types, ordered by a hash of (node id, chunk,
seed) and cut at the sample size. The same seed over the same rows gives the same
sample, and a row keeps its place in that order as other rows come and go, so a map
redrawn after a few writes moves only a few points. The core then projects the sampled
vectors with :func:`semantic.core.projection.pca_2d` (in a worker thread: an SVD of up
to 5,000 rows must not hold up the event loop).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from semantic.core.domain import DEFAULT_VECTOR
from semantic.core.projection import pca_2d
from semantic.core.spaces import ActiveSpaces, Space

if TYPE_CHECKING:
    from semantic.core.ports import ExploreStore

DEFAULT_SAMPLE = 500
"""Vectors sampled when the request does not say."""
MAX_SAMPLE = 5000
"""Most vectors a request may sample."""
MAX_CONTENT_TYPES = 64
"""Most content types a request may filter on."""


@dataclass(frozen=True)
class ExploreQuery:
    """What to map (validated by the caller)."""

    tenant: str
    content_types: tuple[str, ...] = ()
    vector_name: str = DEFAULT_VECTOR
    sample: int = DEFAULT_SAMPLE
    seed: int = 0


@dataclass(frozen=True)
class SampledVector:
    """One sampled vector row with what a map labels it by."""

    node_id: str
    slug: str | None
    title: str
    content_type: str
    chunk: int
    vector: np.ndarray[Any, Any]


@dataclass(frozen=True)
class Sample:
    """The sampled rows (in sample order) and how many rows matched before sampling."""

    rows: list[SampledVector]
    total: int


@dataclass(frozen=True)
class MapPoint:
    """A sampled vector placed on the map."""

    node_id: str
    slug: str | None
    title: str
    content_type: str
    chunk: int
    x: float
    y: float


@dataclass(frozen=True)
class ExploreResult:
    """The map: points, how they were projected, and what was sampled from."""

    points: list[MapPoint]
    method: str
    explained_variance: tuple[float, float]
    total_vectors: int
    space: Space


class Explorer:
    """Samples a space's vectors and projects them to 2-D."""

    def __init__(self, store: ExploreStore, spaces: ActiveSpaces) -> None:
        self._store = store
        self._spaces = spaces

    async def explore(self, space_id: int | None, query: ExploreQuery) -> ExploreResult:
        """The map of ``query``'s sample in ``space_id`` (None: the active space)."""
        space = await self._spaces.space(space_id)
        sample = await self._store.sample(space, query)
        matrix = (
            np.stack([r.vector for r in sample.rows])
            if sample.rows
            else np.zeros((0, space.dim), dtype=np.float32)
        )
        projection = await asyncio.to_thread(pca_2d, matrix)
        points = [
            MapPoint(
                r.node_id,
                r.slug,
                r.title,
                r.content_type,
                r.chunk,
                float(projection.coordinates[i, 0]),
                float(projection.coordinates[i, 1]),
            )
            for i, r in enumerate(sample.rows)
        ]
        return ExploreResult(
            points, projection.method, projection.explained_variance, sample.total, space
        )
