"""The one active-space resolver: one TTL cache, one invalidation rule (a switch made through
it, or a recovery, drops the cached answer at once; one made elsewhere is seen after the TTL)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from semantic.core.spaces import ActiveSpaces, NoActiveSpace, Space

pytestmark = pytest.mark.unit


def _space(space_id: int, state: str = "ready") -> Space:
    return Space(space_id, "m", "sha", 3, 1, state, datetime(2025, 1, 1, tzinfo=UTC), None, {})


class FakeRegistry:
    """A SpaceRegistry in memory that counts how often the active space is read."""

    def __init__(self) -> None:
        self.spaces = {1: _space(1, "active"), 2: _space(2)}
        self.active_id: int | None = 1
        self.previous: int | None = None
        self.reads = 0

    async def active(self) -> Space:
        self.reads += 1
        if self.active_id is None:
            raise NoActiveSpace()
        return self.spaces[self.active_id]

    async def get(self, space_id: int) -> Space:
        return self.spaces[space_id]

    async def list_all(self) -> list[Space]:
        return sorted(self.spaces.values(), key=lambda s: -s.id)

    async def activate(
        self, space_id: int, *, allow_building: bool = False
    ) -> tuple[int | None, Space]:
        self.previous, self.active_id = self.active_id, space_id
        return self.previous, self.spaces[space_id]

    async def rollback(self) -> tuple[int, Space]:
        assert self.previous is not None
        assert self.active_id is not None
        left, self.active_id = self.active_id, self.previous
        return left, self.spaces[self.active_id]

    async def mark_ready(self, space_id: int) -> Space:
        return self.spaces[space_id]

    async def save_build(self, space_id: int, build: dict[str, Any]) -> None:
        return None

    async def reindex(self, **kwargs: Any) -> tuple[Space, bool]:
        return self.spaces[2], False

    async def vector_counts(self, found: Any) -> dict[int, tuple[int, int]]:
        return {}

    async def vector_extension(self) -> str:
        return "fake"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_the_active_space_is_read_once_per_ttl() -> None:
    registry, clock = FakeRegistry(), Clock()
    resolver = ActiveSpaces(registry, ttl_s=1.0, timer=clock)
    assert (await resolver.space()).id == 1
    registry.active_id = 2  # switched by another process
    clock.now = 0.5
    assert (await resolver.space()).id == 1
    assert registry.reads == 1
    clock.now = 1.5
    assert (await resolver.space()).id == 2
    assert registry.reads == 2


async def test_a_switch_through_the_resolver_is_seen_at_once() -> None:
    registry = FakeRegistry()
    resolver = ActiveSpaces(registry, ttl_s=3600.0, timer=Clock())
    assert (await resolver.space()).id == 1
    previous, current = await resolver.activate(2)
    assert (previous, current.id) == (1, 2)
    assert (await resolver.space()).id == 2
    left, back = await resolver.rollback()
    assert (left, back.id) == (2, 1)
    assert (await resolver.space()).id == 1


async def test_invalidate_forgets_the_cached_space() -> None:
    registry = FakeRegistry()
    resolver = ActiveSpaces(registry, ttl_s=3600.0, timer=Clock())
    await resolver.space()
    registry.active_id = 2  # a recovered database with another active space
    resolver.invalidate()
    assert (await resolver.space()).id == 2


async def test_a_zero_ttl_reads_every_time_and_a_space_by_id_is_never_cached() -> None:
    registry = FakeRegistry()
    resolver = ActiveSpaces(registry, ttl_s=0.0, timer=Clock())
    await resolver.space()
    await resolver.space()
    assert registry.reads == 2
    assert (await resolver.space(2)).id == 2
    assert registry.reads == 2


async def test_no_active_space_is_not_cached() -> None:
    registry = FakeRegistry()
    registry.active_id = None
    resolver = ActiveSpaces(registry, ttl_s=3600.0, timer=Clock())
    with pytest.raises(NoActiveSpace):
        await resolver.space()
    registry.active_id = 1
    assert (await resolver.space()).id == 1
