"""The follower of the local index (rebuild for a new space, changes applied, not ready while
rebuilding) and the SearchService's fallback to it when PostgreSQL is unreachable; the feed
and the retrieval here are in-memory stand-ins of the ports, the index the real adapter."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from semantic.common.errors import DependencyUnavailable
from semantic.core.degraded import Apply, ChangeBatch, IndexedNode, IndexedVector, NodeChange
from semantic.core.domain import Filter, Mode, SearchQuery
from semantic.core.local_sync import LocalIndexFollower
from semantic.core.service import SearchService
from semantic.core.spaces import ActiveSpaces, Space
from semantic.store.local.index import UsearchIndex

pytestmark = pytest.mark.unit

DIM = 8


def _space(space_id: int) -> Space:
    return Space(space_id, "m", "sha", DIM, 1, "active", datetime(2026, 1, 1, tzinfo=UTC), None, {})


def _change(node_id: str, vector: np.ndarray[Any, Any]) -> NodeChange:
    node = IndexedNode("", node_id, "page", title=node_id)
    return NodeChange(("", node_id), node, (IndexedVector("content", 0, 0, 1, vector),))


class Feed:
    """A ChangeFeed in memory: a current space, its nodes, and the changes queued."""

    def __init__(self) -> None:
        self.space = _space(1)
        self.nodes: dict[str, np.ndarray[Any, Any]] = {}
        self.queued: list[NodeChange] = []
        self.down = False
        self.reset = ""
        self.origin: int | None = 7

    def _check(self) -> None:
        if self.down:
            raise DependencyUnavailable("postgresql", "connection refused")

    async def active_space(self) -> Space:
        self._check()
        return self.space

    async def snapshot(self, space: Space, apply: Apply, *, batch: int) -> int:
        self._check()
        await apply([_change(n, v) for n, v in self.nodes.items()])
        return 10

    async def changes(self, space: Space, cursor: int, apply: Apply, *, batch: int) -> ChangeBatch:
        self._check()
        if self.reset:
            return ChangeBatch(cursor + 1, 0, 0, self.reset)
        queued, self.queued = self.queued, []
        for start in range(0, len(queued), batch):
            await apply(queued[start : start + batch])
        return ChangeBatch(cursor + 1, len(queued), len(queued))

    async def prune(self, older_than_s: float) -> int:
        return 0


class Registry:
    """Spaces as the Feed has them (unreachable with it)."""

    def __init__(self, feed: Feed) -> None:
        self.feed = feed

    async def active(self) -> Space:
        return await self.feed.active_space()


class Retrieval:
    """The primary path: unreachable while the feed is down."""

    def __init__(self, feed: Feed) -> None:
        self.feed = feed

    async def dense(self, *args: Any, **kwargs: Any) -> list[Any]:
        self.feed._check()
        return []

    async def keyword(self, *args: Any, **kwargs: Any) -> list[Any]:
        self.feed._check()
        return []


class Writer:
    nodes: Any = None


def _service(feed: Feed, follower: LocalIndexFollower | None) -> SearchService:
    registry: Any = Registry(feed)
    retrieval: Any = Retrieval(feed)
    writer: Any = Writer()
    return SearchService(
        ActiveSpaces(registry, ttl_s=0), writer, None, retrieval, None, fallback=follower
    )


@pytest.fixture
def feed() -> Feed:
    rng = np.random.default_rng(3)
    built = Feed()
    built.nodes = {f"n{i}": rng.standard_normal(DIM).astype(np.float32) for i in range(30)}
    return built


async def test_the_follower_builds_applies_changes_and_rebuilds_for_another_space(
    feed: Feed, tmp_path: Path
) -> None:
    index = UsearchIndex(tmp_path)
    follower = LocalIndexFollower(feed, index, sync_s=60)
    with pytest.raises(DependencyUnavailable, match="not built yet"):
        follower.reader(DependencyUnavailable("postgresql", "down"))
    await follower.sync()
    assert follower.ready
    assert index.nodes == 30
    assert index.cursor == 10
    assert re.search(r"; 30 nodes; synced [\d.]+ s ago; saved$", follower.describe())
    feed.queued = [NodeChange(("", "n0"), None), _change("new", feed.nodes["n1"])]
    await follower.sync()
    assert index.nodes == 30
    assert follower.describe().endswith("; changes not saved yet")  # save_s is not up
    assert index.node("", node_id="n0", slug=None) is None
    assert index.cursor == 11
    feed.space = _space(2)
    await follower.sync()
    assert index.space == feed.space
    assert index.nodes == 30  # rebuilt from the snapshot
    reloaded = UsearchIndex(tmp_path)
    assert reloaded.load()  # a rebuild is saved at once
    assert reloaded.space == feed.space
    # An emptied database: the space comes back under the same id, created anew.
    feed.space = Space(2, "m", "sha", DIM, 1, "active", datetime(2026, 2, 1, tzinfo=UTC), None, {})
    feed.nodes = {}
    await follower.sync()
    assert index.space == feed.space
    assert index.nodes == 0


async def test_the_follower_rebuilds_when_the_change_log_cannot_say_what_changed(
    feed: Feed, tmp_path: Path
) -> None:
    index = UsearchIndex(tmp_path)
    follower = LocalIndexFollower(feed, index, sync_s=60)
    await follower.sync()
    assert index.nodes == 30
    # A TRUNCATE, or a restored database: the same space, fewer nodes, no change rows.
    feed.nodes = {k: v for k, v in feed.nodes.items() if k < "n2"}
    feed.reset = "a table was truncated"
    await follower.sync()
    assert index.nodes == len(feed.nodes) < 30
    assert index.node("", node_id="n5", slug=None) is None
    assert follower.ready


async def test_candidates_come_only_from_an_index_this_process_made_current(
    feed: Feed, tmp_path: Path
) -> None:
    index = UsearchIndex(tmp_path)
    follower = LocalIndexFollower(feed, index, sync_s=60)
    query = feed.nodes["n4"] + np.float32(0.1)

    def asked(space: Space) -> Any:
        return follower.candidates(space, "", query, name="content", flt=Filter(), limit=5)

    assert asked(feed.space) is None  # not built yet
    await follower.sync()
    found = asked(feed.space)
    assert found is not None
    assert (found.cursor, found.origin, found.complete) == (10, 7, True)  # 30 nodes: exhaustive
    unit = query / np.linalg.norm(query)
    exact = {k: 1.0 - float(v @ unit / np.linalg.norm(v)) for k, v in feed.nodes.items()}
    assert [c.node_id for c in found.found] == sorted(exact, key=exact.__getitem__)
    assert all(abs(c.distance - exact[c.node_id]) < 1e-5 for c in found.found)
    assert asked(_space(2)) is None  # another space than the index's
    other = follower.candidates(feed.space, "other", query, name="content", flt=Filter(), limit=5)
    assert other is not None
    assert (other.found, other.complete) == ((), True)  # a tenant without nodes: none at all
    # Loaded from disk by another process: ready for degraded reads, not for local-first
    # ones until a sync of its own has checked the change log.
    index.save()
    loaded = LocalIndexFollower(feed, UsearchIndex(tmp_path), sync_s=60)
    loaded.start()  # its first sync runs at the next await
    try:
        assert loaded.ready
        assert asked_of(loaded, feed.space, query) is None
    finally:
        await loaded.close()
    feed.reset = "a table was truncated"
    await follower.sync()  # rebuilt from the snapshot: current again
    assert asked(feed.space) is not None


def asked_of(follower: LocalIndexFollower, space: Space, query: np.ndarray[Any, Any]) -> Any:
    return follower.candidates(space, "", query, name="content", flt=Filter(), limit=5)


async def test_search_and_nearest_fall_back_to_the_local_index_while_postgresql_is_down(
    feed: Feed, tmp_path: Path
) -> None:
    follower = LocalIndexFollower(feed, UsearchIndex(tmp_path), sync_s=60)
    await follower.sync()
    service = _service(feed, follower)
    query = SearchQuery(tenant="", mode=Mode.DENSE, vector=feed.nodes["n5"], top_k=3)
    normal = await service.search(query)
    assert not normal.degraded
    feed.down = True
    result = await service.search(query)
    assert result.degraded
    assert result.mode is Mode.DENSE
    assert result.hits[0].node_id == "n5"
    assert result.hits[0].node is not None
    source, near = await service.nearest(
        "",
        node_id="n5",
        slug=None,
        vector_name="content",
        top_k=3,
        flt=Filter(),
        min_score=None,
    )
    assert source == "n5"
    assert near.degraded
    assert "n5" not in [h.node_id for h in near.hits]
    assert len(near.hits) == 3


async def test_without_a_ready_index_the_outage_is_reported_with_the_reason(
    feed: Feed, tmp_path: Path
) -> None:
    feed.down = True
    follower = LocalIndexFollower(feed, UsearchIndex(tmp_path), sync_s=60)
    service = _service(feed, follower)
    query = SearchQuery(tenant="", mode=Mode.DENSE, vector=feed.nodes["n5"], top_k=3)
    with pytest.raises(DependencyUnavailable, match="local index is not built yet"):
        await service.search(query)
    with pytest.raises(DependencyUnavailable, match="connection refused"):
        await _service(feed, None).search(query)
