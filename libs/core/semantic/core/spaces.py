"""Embedding spaces as values, and the one resolver of the active space.

A space is a model (id + sha256 + dim) at a version; the alias ``active`` names the space
search reads. Every caller that needs "the active space" (search, the indexer's writes and
heal loop, maintenance) asks an :class:`ActiveSpaces` resolver: one TTL cache
(``cachetools.TTLCache``), one invalidation rule. The rule: an answer is kept at most
``ttl_s`` seconds (a switch made by another process reaches this one within that time);
a switch made through this resolver (:meth:`ActiveSpaces.activate`,
:meth:`ActiveSpaces.rollback`) and a database recovery (:meth:`ActiveSpaces.invalidate`)
drop it at once. Both spaces stay complete during a switch, so a reader on the old one
still gets answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from cachetools import TTLCache

from semantic.common.errors import FailedPrecondition, InvalidArgument

if TYPE_CHECKING:
    from semantic.core.ports import SpaceRegistry

ACTIVE = "active"
DEFAULT_ACTIVE_SPACE_TTL_S = 1.0
"""How long a resolved active space is kept (seconds): a switch reaches every replica
within this time."""


IndexPrecision = Literal["float32", "half"]
"""How a space's HNSW index stores its vectors: ``float32`` (the vectors themselves) or
``half`` (half-precision copies, ``halfvec``: half the index size). Either way the vectors
are kept, and scores computed, at full precision."""
INDEX_PRECISIONS: tuple[IndexPrecision, ...] = ("float32", "half")
DEFAULT_INDEX_PRECISION: IndexPrecision = "float32"
HALF_MAX = 65_504.0
"""The largest magnitude a half-precision value holds: a vector of a ``half`` space (or a
query of one) with a component beyond it cannot be indexed (or searched)."""
HALF_MIN_NORMAL = 2.0**-14
"""The smallest normal half-precision magnitude (about 6.1e-5): a vector none of whose
components reaches it would be rounded to (almost) zeros by a ``half`` index."""


def check_half_range(vector: np.ndarray[Any, Any], precision: IndexPrecision, field: str) -> None:
    """InvalidArgument (naming ``field``) when ``vector`` does not fit a ``half`` index: a
    component beyond its range, or none large enough not to round to zero there."""
    if precision != "half" or not vector.size:
        return
    largest = float(np.max(np.abs(vector)))
    if largest > HALF_MAX:
        raise InvalidArgument(
            field,
            f"has a component beyond +-{HALF_MAX:,.0f}, which this space's half-precision "
            "index cannot hold (scale the vector down: cosine similarity ignores length)",
        )
    if largest < HALF_MIN_NORMAL:
        raise InvalidArgument(
            field,
            f"has no component of {HALF_MIN_NORMAL:.2g} or more: this space's half-precision "
            "index would round it to zeros (scale the vector up: cosine similarity ignores "
            "length)",
        )


class NoActiveSpace(FailedPrecondition):
    """No space is active: nothing was set up yet, or the database was emptied."""

    def __init__(self) -> None:
        super().__init__("no active embedding space yet")


@dataclass(frozen=True)
class Space:
    """One embedding space: a model at a version, in a state (building, ready, active,
    retired, failed), with the progress of its build and the precision of its HNSW index
    (fixed when the space is created)."""

    id: int
    model_id: str
    model_sha256: str
    dim: int
    version: int
    state: str
    created_at: datetime
    activated_at: datetime | None
    build: dict[str, Any]
    index_precision: IndexPrecision = DEFAULT_INDEX_PRECISION

    @property
    def table(self) -> str:
        """The name the store keeps this space's vectors under (made from the id alone)."""
        return vector_table(self.id)


def vector_table(space_id: int) -> str:
    """``semantic.vectors_<id>``; ``space_id`` is an int by type, never text from a client."""
    return f"semantic.vectors_{int(space_id)}"


class ActiveSpaces:
    """Resolves the active space (or a space by id) through one TTL cache (module doc)."""

    def __init__(
        self,
        registry: SpaceRegistry,
        *,
        ttl_s: float = DEFAULT_ACTIVE_SPACE_TTL_S,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._ttl_s = ttl_s
        self._cache: TTLCache[str, Space] = TTLCache(maxsize=1, ttl=max(ttl_s, 1e-9), timer=timer)

    @property
    def registry(self) -> SpaceRegistry:
        """Where spaces are read and switched."""
        return self._registry

    async def space(self, space_id: int | None = None) -> Space:
        """The space ``space_id`` (read every time), or the active one (cached)."""
        if space_id is not None:
            return await self._registry.get(space_id)
        if self._ttl_s > 0:
            cached = self._cache.get(ACTIVE)
            if cached is not None:
                return cached
        active = await self._registry.active()
        if self._ttl_s > 0:
            self._cache[ACTIVE] = active
        return active

    def invalidate(self) -> None:
        """Forget the cached active space (the next call reads it again)."""
        self._cache.clear()

    async def activate(
        self, space_id: int, *, allow_building: bool = False
    ) -> tuple[int | None, Space]:
        """Point ``active`` at ``space_id``; returns (previous id, new space)."""
        try:
            return await self._registry.activate(space_id, allow_building=allow_building)
        finally:
            self.invalidate()

    async def rollback(self) -> tuple[int, Space]:
        """Point ``active`` back at the previous space; returns (space left, new active)."""
        try:
            return await self._registry.rollback()
        finally:
            self.invalidate()
