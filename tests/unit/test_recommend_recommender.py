"""The Recommend use case against in-memory reads at the core's own protocol seam: the
same hits with or without a spare session, excluded nodes never come back, a user without
history gets popular nodes, and bad examples name their field."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence, Set
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from semantic.common.errors import DependencyUnavailable, InvalidArgument, NotFound
from semantic.core.domain import Filter, NodeRecord
from semantic.core.recommend.events import Action, TrackConfig
from semantic.core.recommend.journey import LoggedEvent, StoredUser
from semantic.core.recommend.ports import UserRead
from semantic.core.recommend.recommender import RATE_STALE_S, RATE_TTL_S, Recommender
from semantic.core.recommend.similarity import unit
from semantic.core.recommend.values import (
    COUNT_NAMES,
    CandidateDetails,
    Example,
    RecommendConfig,
    RecommendQuery,
    RelatedVia,
    Similar,
    SpaceRef,
    Wanted,
)

pytestmark = pytest.mark.unit
NOW = datetime(2026, 6, 1, tzinfo=UTC)
TRACK = TrackConfig(
    weights=dict.fromkeys(Action, 1.0),
    half_life_hours=72.0,
    max_future_s=300.0,
)
CONFIG = RecommendConfig(
    similarity_weight=1.0,
    engagement_weight=0.3,
    recency_weight=0.1,
    archetype_weight=0.2,
    prior_strength=20.0,
    default_rate=0.05,
    recency_half_life_days=30.0,
    candidates=4,
    popular_candidates=3,
    max_top_k=100,
    max_examples=4,
    max_share_per_content_type=1.0,
)


@dataclass(frozen=True)
class _Space:
    id: int = 1
    dim: int = 3


class _Reads:
    """Nodes with vectors and popularity, one user's row and exclusions, in memory."""

    def __init__(self, *, spare: bool | int, beside: str = "all") -> None:
        rng = np.random.default_rng(5)
        self.vectors = {f"n{i}": unit(rng.normal(size=3)) for i in range(12)}
        self.popularity = {"n3": 9.0, "n7": 5.0, "n11": 1.0}
        self.stored: StoredUser | None = StoredUser(
            None, None, 1, self.vectors["n0"].astype(np.float64) * 3, 3.0, NOW, 3
        )
        self.excluded = ["n0", "n1"]
        self.idle = int(spare)  # sessions a spare() call may still hand out
        self.spares = 0
        self.beside = beside  # which nearest nodes' details come with them: all, some, none
        self.totals = (0.0, 0.0)  # the tenant's engaged and shown
        self.total_reads = 0

    @asynccontextmanager
    async def session(self) -> AsyncIterator[_Reads]:
        yield self

    @asynccontextmanager
    async def spare(self) -> AsyncIterator[_Reads | None]:
        self.spares += 1
        if self.idle <= 0:
            yield None
            return
        self.idle -= 1
        try:
            yield self
        finally:
            self.idle += 1

    async def user(
        self,
        tenant: str,
        user_id: str,
        *,
        exclude_seen: bool,
        include_converted: bool,
        centroids_in: SpaceRef | None = None,
    ) -> UserRead:
        return UserRead(self.stored, list(self.excluded), centroids=[] if centroids_in else None)

    async def resolve(
        self, tenant: str, ids: Sequence[str], slugs: Sequence[str]
    ) -> list[tuple[str, str | None]]:
        return [(i, None) for i in ids if i in self.vectors]

    async def logged_events(self, tenant: str, user_id: str, limit: int) -> list[LoggedEvent]:
        return []

    async def node_vectors(
        self, space: SpaceRef, keys: Set[tuple[str, str]], name: str
    ) -> dict[tuple[str, str], Any]:
        return {k: self.vectors[k[1]] for k in keys if k[1] in self.vectors}

    async def nearest(
        self,
        space: SpaceRef,
        tenant: str,
        vector: Any,
        *,
        vector_name: str,
        flt: Filter,
        limit: int,
        wanted: Wanted | None = None,
    ) -> tuple[list[str], dict[str, CandidateDetails]]:
        allowed = [n for n in self.vectors if n not in flt.exclude_ids]
        allowed.sort(key=lambda n: -float(self.vectors[n] @ vector))
        ids = allowed[:limit]
        given = {"all": ids, "some": ids[::2], "none": []}[self.beside]
        return ids, await self.details(space, tenant, given, wanted) if wanted else {}

    async def popular(
        self, space: SpaceRef, tenant: str, flt: Filter, limit: int, wanted: Wanted
    ) -> tuple[list[tuple[str, bool]], float, dict[str, CandidateDetails]]:
        ranked = sorted(
            (n for n in self.popularity if n not in flt.exclude_ids),
            key=lambda n: -self.popularity[n],
        )
        ids = ranked[:limit]
        return [(n, False) for n in ids], 0.0, await self.details(space, tenant, ids, wanted)

    async def details(
        self, space: SpaceRef, tenant: str, ids: Sequence[str], wanted: Wanted
    ) -> dict[str, CandidateDetails]:
        slim, similarity_to = wanted.slim, wanted.similarity_to
        out = {}
        for node_id in ids:
            counts = dict.fromkeys(COUNT_NAMES, 0)
            counts["impressions"] = counts["clicks"] = int(self.popularity.get(node_id, 0))
            out[node_id] = CandidateDetails(
                node=NodeRecord("t", node_id, "page", updated_at=NOW),
                counts=counts,
                archetype_score=0.0,
                vector=None if slim else self.vectors[node_id],
                similarity=float(self.vectors[node_id] @ similarity_to)
                if slim and similarity_to is not None
                else None,
                partial=slim,
            )
        return out

    async def complete(
        self, space: SpaceRef, tenant: str, vector_name: str, ids: Sequence[str]
    ) -> dict[str, tuple[NodeRecord, Any]]:
        return {
            i: (NodeRecord("t", i, "page", title=i.upper(), updated_at=NOW), self.vectors[i])
            for i in ids
        }

    async def journey_items(
        self, space: SpaceRef, tenant: str, user_id: str, vector_name: str, limit: int
    ) -> list[tuple[Similar, Any]]:
        return [(Similar("n0", "", "N0", 0.0, action=int(Action.LIKE)), self.vectors["n0"])]

    async def engagement_totals(self, tenant: str) -> tuple[float, float]:
        self.total_reads += 1
        return self.totals

    async def related(
        self, tenant: str, user_id: str, flt: Any, recent: int
    ) -> tuple[RelatedVia, ...]:
        return ()


async def _recommend(reads: _Reads, **fields: Any) -> list[str]:
    result = await Recommender(reads, CONFIG, TRACK).recommend(
        _Space(), RecommendQuery("t", **fields)
    )
    return [h.node.id for h in result.hits]


@pytest.mark.parametrize("mmr", [None, 0.5])
async def test_spare_sessions_change_nothing_but_where_reads_run(mmr: float | None) -> None:
    alone = await _recommend(_Reads(spare=0), user_id="u", top_k=5, mmr_lambda=mmr)
    paired = await _recommend(_Reads(spare=1), user_id="u", top_k=5, mmr_lambda=mmr)
    three = await _recommend(_Reads(spare=5), user_id="u", top_k=5, mmr_lambda=mmr)
    assert alone == paired == three
    assert len(alone) == 5


@pytest.mark.parametrize("beside", ["some", "none"])
async def test_details_the_nearest_read_did_not_give_are_read_after(beside: str) -> None:
    """A nearest read whose search went exact gives no details (or only some): the
    missing ones are read afterwards, and the hits are the same."""
    everything = await _recommend(_Reads(spare=2), user_id="u", top_k=5)
    partly = await _recommend(_Reads(spare=2, beside=beside), user_id="u", top_k=5)
    assert partly == everything
    assert len(everything) == 5


async def test_excluded_nodes_never_come_back_and_hits_are_completed() -> None:
    reads = _Reads(spare=True)
    result = await Recommender(reads, CONFIG, TRACK).recommend(
        _Space(), RecommendQuery("t", user_id="u", top_k=20)
    )
    ids = [h.node.id for h in result.hits]
    assert not {"n0", "n1"} & set(ids)
    assert all(h.node.title == h.node.id.upper() for h in result.hits)
    assert result.hits[0].source == "journey"
    assert result.hits[0].similar_to[0].node_id == "n0"
    assert result.journey_events == 3


async def test_a_user_without_history_gets_the_popular_nodes() -> None:
    reads = _Reads(spare=True)
    reads.stored, reads.excluded = None, []
    result = await Recommender(reads, CONFIG, TRACK).recommend(
        _Space(), RecommendQuery("t", user_id="new", top_k=10)
    )
    assert [h.node.id for h in result.hits] == ["n3", "n7", "n11"]
    assert {h.source for h in result.hits} == {"global_popular"}
    assert reads.spares == 0  # no query vector: nothing to read in parallel


async def test_bad_examples_name_their_field() -> None:
    reads = _Reads(spare=False)
    with pytest.raises(NotFound):
        await _recommend(reads, positive=(Example(node_id="missing"),))
    with pytest.raises(InvalidArgument) as caught:
        await _recommend(reads, negative=(Example(vector=np.ones(5, np.float32)),))
    assert caught.value.field == "negative[0].vector"
    with pytest.raises(InvalidArgument):
        await _recommend(reads, positive=tuple(Example(node_id=f"n{i}") for i in range(5)))


class _FailingAside(_Reads):
    """The user's journey items fail while the nearest and the popular nodes are still
    being read; those two end on their own 200 loop turns later if nobody cancels them."""

    def __init__(self) -> None:
        super().__init__(spare=2)
        self.running: set[str] = set()
        self.finished: set[str] = set()  # ended normally, not cancelled
        self.release = asyncio.Event()

    async def _slow(self, what: str) -> None:
        self.running.add(what)
        try:
            await self.release.wait()
            self.finished.add(what)
        finally:
            self.running.discard(what)

    async def nearest(
        self, *args: Any, **kwargs: Any
    ) -> tuple[list[str], dict[str, CandidateDetails]]:
        await self._slow("nearest")
        return [], {}

    async def popular(
        self, *args: Any, **kwargs: Any
    ) -> tuple[list[tuple[str, bool]], float, dict[str, CandidateDetails]]:
        await self._slow("popular")
        return [], 0.0, {}

    async def journey_items(self, *args: Any, **kwargs: Any) -> list[tuple[Similar, Any]]:
        for _ in range(1000):  # until both others are under way (a few loop turns)
            if len(self.running) == 2:
                asyncio.get_running_loop().create_task(self._release_later())
                raise DependencyUnavailable("postgresql", "connection lost")
            await asyncio.sleep(0)
        raise AssertionError(f"not read side by side: only {self.running} under way")

    async def _release_later(self) -> None:
        for _ in range(200):
            await asyncio.sleep(0)
        self.release.set()


async def test_a_failing_read_cancels_the_others_before_the_sessions_go_back() -> None:
    reads = _FailingAside()
    with pytest.raises(DependencyUnavailable, match="connection lost"):
        await Recommender(reads, CONFIG, TRACK).recommend(
            _Space(), RecommendQuery("t", user_id="u", top_k=5)
        )
    assert reads.running == set()  # nothing still reading on a released session
    assert reads.finished == set()  # cancelled at the failure, not waited for
    assert reads.idle == 2  # both spares given back


async def test_a_stale_rate_is_used_while_a_fresh_one_is_read_aside() -> None:
    """A tenant's engagement rate is reused for RATE_TTL_S; for RATE_STALE_S more it is
    still used while a fresh one is read on another session; older, the call reads it."""
    now = [1000.0]
    reads = _Reads(spare=2)
    recommender = Recommender(reads, CONFIG, TRACK, clock=lambda: now[0])

    async def rate() -> float:
        return await recommender._rate(reads, "t")  # type: ignore[arg-type]

    reads.totals = (50.0, 200.0)
    assert await rate() == 0.25
    reads.totals = (100.0, 200.0)
    now[0] += RATE_TTL_S - 1
    assert await rate() == 0.25  # reused, not read
    assert reads.total_reads == 1
    now[0] += 2  # past the TTL: the stale rate answers, a fresh one is read aside
    assert await rate() == 0.25
    refresh = recommender._refreshing["t"]
    assert await rate() == 0.25  # one refresh at a time
    await refresh
    assert reads.total_reads == 2
    assert await rate() == 0.5
    reads.totals = (150.0, 200.0)
    now[0] += RATE_TTL_S + RATE_STALE_S + 1  # too old to use: read before answering
    assert await rate() == 0.75
    assert reads.total_reads == 3
    await asyncio.sleep(0)  # the finished refresh's callback
    assert recommender._refreshing == {}
