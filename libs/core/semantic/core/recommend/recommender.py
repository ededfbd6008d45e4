"""Recommend: candidates near the user's journey (or the request's examples), plus the
archetype's and the global popular nodes, scored by a weighted sum of explainable parts
(:mod:`semantic.core.recommend.scoring`).

Dismissed nodes are always excluded, converted ones unless asked, seen ones when asked.
Diversity: MMR re-ranking when ``mmr_lambda`` is given, then a cap on the share of one
content type. A user without history gets the archetype's popular nodes, then the global
popular ones; never an error.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np
import structlog
from cachetools import LRUCache

from semantic.common.errors import InvalidArgument, NotFound
from semantic.core.filters import validate_filter
from semantic.core.modifiers import Rescoring
from semantic.core.recommend import smoothing
from semantic.core.recommend.clustering import nearest_centroid
from semantic.core.recommend.debug import RecommendDebug, RecommendTrace, explain
from semantic.core.recommend.diversity import diversify, type_cap
from semantic.core.recommend.events import TrackConfig
from semantic.core.recommend.journey import Journey, StoredUser, needs_replay
from semantic.core.recommend.ports import RecommendReads, RecommendSession
from semantic.core.recommend.scoring import Scoring, modify, score_candidates
from semantic.core.recommend.similarity import average_vector, explain_hits, unit
from semantic.core.recommend.tracker import replay_journey
from semantic.core.recommend.values import (
    CandidateDetails,
    Example,
    RecommendConfig,
    RecommendHit,
    RecommendQuery,
    RecommendResult,
    RelatedVia,
    RelationSignals,
    Similar,
    Source,
    SpaceRef,
    Wanted,
)

_T = TypeVar("_T")
_U = TypeVar("_U")
Vector = np.ndarray[Any, Any]
RATE_TTL_S = 10.0
"""How long a tenant's mean engagement rate is reused as read."""
RATE_STALE_S = 60.0
"""How long after that it is still used while a fresh one is read aside: reading it sums
the tenant's whole engagement table (10-25 ms at 100k nodes), which no request waits
for then."""
log = structlog.get_logger(__name__)


@dataclass
class _User:
    archetype: str = ""
    journey: Journey = field(default_factory=Journey.empty)
    events: int = 0
    excluded: list[str] = field(default_factory=list)
    row: StoredUser | None = None
    stored: bool = False  # the journey is the stored one (not rebuilt from the log)
    conflicts: tuple[tuple[str, str], ...] = ()
    centroids: list[tuple[str, Vector]] = field(default_factory=list)

    def derived(self) -> str:
        """The nearest derived archetype centroid to the journey, if any were read."""
        vector = self.journey.vector()
        if vector is None or not self.centroids:
            return ""
        return nearest_centroid(self.centroids, vector)


@dataclass(frozen=True)
class _Nearest:
    """The nearest nodes to each query vector, and the details read with them."""

    ids: list[list[str]]
    details: dict[str, CandidateDetails]


@dataclass(frozen=True)
class _Popular:
    """The archetype, its (or the global) popular nodes and their details."""

    archetype: str
    nodes: list[tuple[str, bool]]
    best: float
    details: dict[str, CandidateDetails]


@dataclass(frozen=True)
class _OfUser:
    """The user's reads that do not depend on the nearest nodes."""

    journey_items: list[tuple[Similar, Vector]]
    rate: float
    related: tuple[RelatedVia, ...] = ()


@dataclass(frozen=True)
class _Aside:
    """The reads that do not depend on the nearest nodes."""

    popular: _Popular
    of_user: _OfUser


class Recommender:
    """Scores candidates for a user or for examples; reads only."""

    def __init__(
        self,
        reads: RecommendReads,
        config: RecommendConfig,
        track: TrackConfig,
        *,
        rescoring: Rescoring | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``rescoring``: score modifiers' defaults and the nodes' feedback (none: only
        the modifiers a request gives, without feedback); ``clock``: seconds, for the
        age of a tenant's engagement rate."""
        self._reads = reads
        self._config = config
        self._track = track
        self._rescoring = rescoring or Rescoring()
        self._clock = clock
        self._rates: LRUCache[str, tuple[float, float]] = LRUCache(maxsize=10_000)
        """tenant -> (rate, when it was read by the clock)"""
        self._refreshing: dict[str, asyncio.Task[None]] = {}

    @property
    def config(self) -> RecommendConfig:
        """Defaults in use."""
        return self._config

    async def explain(
        self, space: SpaceRef, query: RecommendQuery, *, max_candidates: int
    ) -> RecommendDebug:
        """A recommendation and everything behind it (the debugger): the same as
        :meth:`recommend`, recorded, then the reads only a debug needs."""
        trace = RecommendTrace()
        result = await self.recommend(space, query, trace)
        return await explain(self._reads, self._track, result, trace, max_candidates)

    async def recommend(
        self, space: SpaceRef, query: RecommendQuery, trace: RecommendTrace | None = None
    ) -> RecommendResult:
        """The top_k recommendations for ``query`` (see the module doc); ``trace`` (a debug
        only) records how they were made."""
        validate_filter(query.filter)
        config = self._config
        weights = config.weights(query.weights)
        async with self._reads.session() as session:
            user = await self._user(session, space, query)
            examples_pos = await self._examples(session, space, query, query.positive, "positive")
            examples_neg = await self._examples(session, space, query, query.negative, "negative")
            example_ids = {e[0] for e in (*examples_pos, *examples_neg) if e[0]}
            given = query.archetype or user.archetype
            excluded = set(user.excluded) | example_ids
            flt = replace(
                query.filter, exclude_ids=tuple(sorted({*query.filter.exclude_ids, *excluded}))
            )
            query_vectors: list[Vector] = []
            negatives: list[Vector] = [v for _, v in examples_neg]
            positives: list[Vector] = [v for _, v in examples_pos]
            if trace is not None:
                trace.start(
                    query,
                    user=user.row,
                    archetype=user.archetype,
                    journey_stored=user.stored and user.journey.vector() is not None,
                    excluded=user.excluded,
                    examples=(examples_pos, examples_neg),
                    weights=weights,
                )
            source: Source
            if positives or negatives:
                source = "examples"
                if query.strategy == "best_score" and positives:
                    query_vectors = positives
                else:
                    query_vectors = [average_vector(positives, negatives)]
            else:
                source = "journey"
                journey_vector = user.journey.vector()
                if journey_vector is not None:
                    query_vectors = [journey_vector]
            # At most one query vector scoring every candidate (no best_score over examples,
            # no MMR comparing candidates with each other): the cosine is computed by the
            # store and only the final hits' nodes and vectors are read in full.
            best_of_examples = query.strategy == "best_score" and bool(positives or negatives)
            chooser = self._rescoring.chooser(query.modifiers, query.default_modifiers)
            # Modifiers read the candidates' metadata and tags: no slim reads then.
            slim = (
                len(query_vectors) <= 1
                and not best_of_examples
                and query.mmr_lambda is None
                and chooser is None
            )
            similarity_to = query_vectors[0] if slim and query_vectors else None
            want_items = source == "journey" and bool(query_vectors)
            if trace is not None:
                trace.query = "none" if not query_vectors else source
            nearest_limit = max(config.candidates, query.top_k * 4)
            archetype = given or user.derived()
            wanted = Wanted(query.vector_name, archetype, slim, similarity_to)

            async def nearest(on: RecommendSession) -> _Nearest:
                found = _Nearest([], {})
                for v in query_vectors:
                    ids, read = await on.nearest(
                        space,
                        query.tenant,
                        v,
                        vector_name=query.vector_name,
                        flt=flt,
                        limit=nearest_limit,
                        wanted=wanted,
                    )
                    found.ids.append(ids)
                    found.details.update(read)
                return found

            async def details(on: RecommendSession, ids: list[str]) -> dict[str, CandidateDetails]:
                return await on.details(space, query.tenant, ids, wanted)

            async def popular(on: RecommendSession) -> _Popular:
                limit = max(config.popular_candidates, query.top_k * 2)
                nodes, best, read = await on.popular(space, query.tenant, flt, limit, wanted)
                return _Popular(archetype, nodes, best, read)

            async def of_user(on: RecommendSession) -> _OfUser:
                items = (
                    await on.journey_items(
                        space, query.tenant, query.user_id, query.vector_name, config.journey_items
                    )
                    if want_items
                    else []
                )
                related = (
                    await on.related(query.tenant, query.user_id, flt, config.journey_items)
                    if query.user_id and weights["relations"] > 0
                    else ()
                )
                return _OfUser(items, await self._rate(on, query.tenant), related)

            async def aside(on: RecommendSession, other: RecommendSession | None) -> _Aside:
                """The popular nodes (and their details) and the user's reads: side by
                side when a further session is idle, one after the other otherwise."""
                if other is None:
                    return _Aside(await popular(on), await of_user(on))
                return _Aside(*await _both(popular(on), of_user(other)))

            # The nearest nodes and their details on this session while the popular nodes
            # and their details are read on a second one and the user's journey items and
            # related nodes on a third, as far as idle connections allow; then the details
            # none of those reads gave (related nodes, a search that went exact), shared
            # among the sessions.
            candidates: dict[str, Source] = {}
            async with AsyncExitStack() as stack:
                spares: list[RecommendSession] = []
                for _ in range(2 if query_vectors else 0):
                    spare = await stack.enter_async_context(self._reads.spare())
                    if spare is None:
                        break
                    spares.append(spare)
                found: _Nearest
                if not spares:
                    found, side = await nearest(session), await aside(session, None)
                else:
                    found, side = await _both(
                        nearest(session), aside(spares[0], spares[1] if spares[1:] else None)
                    )
                for nodes in found.ids:
                    for node_id in nodes:
                        candidates.setdefault(node_id, source)
                for node_id, from_archetype in side.popular.nodes:
                    kind: Source = "archetype_popular" if from_archetype else "global_popular"
                    candidates.setdefault(node_id, kind)
                signals = RelationSignals(side.of_user.related, user.conflicts)
                for via in signals.related:  # what the user's recent nodes lead to
                    candidates.setdefault(via.node_id, "related")
                conflicts = [c for c in signals.conflicts if c[0] in candidates]
                for node_id, _ in conflicts:  # in conflict with a node the user converted on
                    candidates.pop(node_id, None)
                read = {**side.popular.details, **found.details}
                rest = [node_id for node_id in candidates if node_id not in read]
                sessions = [session, *spares]
                each = -(-len(rest) // len(sessions))
                parts = [rest[i : i + each] for i in range(0, len(rest), each)] if rest else []
                for part in await _all(
                    [details(on, ids) for on, ids in zip(sessions, parts, strict=False)]
                ):
                    read.update(part)
            scoring = Scoring(
                weights,
                query_vectors,
                positives,
                negatives,
                best_of_examples,
                side.popular.best,
                side.of_user.rate,
                datetime.now(UTC),
                related=signals.strongest(),
            )
            scored = score_candidates(candidates, read, scoring, config)
            if chooser is not None:
                scored_nodes = [s.node for s in scored]
                values = await self._rescoring.feedback_of(query.tenant, scored_nodes, chooser)
                scored = modify(scored, chooser, values.get)
            share = (
                query.max_share
                if query.max_share is not None
                else config.max_share_per_content_type
            )
            hits = diversify(
                scored,
                weights,
                top_k=query.top_k,
                share=share,
                mmr_lambda=query.mmr_lambda,
                walked=trace.walked if trace else None,
            )
            if trace is not None:
                trace.scored, trace.cap = scored, type_cap(share, query.top_k)
            hits = await self._complete(session, space, query, hits, read)
        explain_hits(
            hits,
            read,
            side.of_user.journey_items,
            (examples_pos, examples_neg),
            self._config.similar_items,
        )
        for hit in hits:
            hit.related_via = signals.via(hit.node.id)
        return RecommendResult(
            hits=hits,
            recommendation_id=str(uuid.uuid4()),
            archetype=archetype or "",
            journey_events=user.events,
            space=space,
            conflicts=conflicts,
        )

    async def _user(
        self, session: RecommendSession, space: SpaceRef, query: RecommendQuery
    ) -> _User:
        if not query.user_id:
            return _User()
        read = await session.user(
            query.tenant,
            query.user_id,
            exclude_seen=query.exclude_seen,
            include_converted=query.include_converted,
            centroids_in=None if query.archetype else space,
        )
        row = read.row
        if row is None:
            return _User(excluded=read.excluded, conflicts=read.conflicts)
        journey = Journey.stored(row, space.id)
        stored = True
        if needs_replay(row, space.id) and row.events:
            journey = await replay_journey(session, space, query.tenant, query.user_id, self._track)
            stored = False
        return _User(
            row.archetype or "",
            journey,
            row.events,
            read.excluded,
            row,
            stored,
            read.conflicts,
            read.centroids or [],
        )

    async def _examples(
        self,
        session: RecommendSession,
        space: SpaceRef,
        query: RecommendQuery,
        examples: Sequence[Example],
        field_name: str,
    ) -> list[tuple[str, Vector]]:
        """(node id or '', unit vector) per example."""
        if len(query.positive) + len(query.negative) > self._config.max_examples:
            raise InvalidArgument(
                "positive", f"at most {self._config.max_examples} examples with negative"
            )
        named = [e for e in examples if e.vector is None]
        ids: dict[str, str] = {}
        if named:
            for found, slug in await session.resolve(
                query.tenant,
                [e.node_id for e in named if e.node_id],
                [e.slug for e in named if e.slug],
            ):
                ids[found] = found
                if slug:
                    ids[f"slug:{slug}"] = found
        vectors = await session.node_vectors(
            space, {(query.tenant, i) for i in set(ids.values())}, query.vector_name
        )
        out = []
        for index, example in enumerate(examples):
            if example.vector is not None:
                if example.vector.size != space.dim:
                    raise InvalidArgument(
                        f"{field_name}[{index}].vector",
                        f"has {example.vector.size} dimensions, the space holds {space.dim}",
                    )
                out.append(("", unit(example.vector)))
                continue
            key = example.node_id or f"slug:{example.slug}"
            node_id = ids.get(key)
            if node_id is None:
                what = f"id={example.node_id}" if example.node_id else f"slug={example.slug}"
                raise NotFound("node", f"{field_name}[{index}] {what}")
            vector = vectors.get((query.tenant, node_id))
            if vector is None:
                raise NotFound("vector", f"{query.vector_name!r} of node {node_id!r}")
            out.append((node_id, unit(vector)))
        return out

    async def _rate(self, session: RecommendSession, tenant: str) -> float:
        """The tenant's mean engagement rate p0: reused for RATE_TTL_S, then for
        RATE_STALE_S more while a fresh one is read on another session; older, read
        here."""
        cached = self._rates.get(tenant)
        if cached is not None:
            rate, read_at = cached
            age = self._clock() - read_at
            if age < RATE_TTL_S:
                return rate
            if age < RATE_TTL_S + RATE_STALE_S:
                self._refresh_rate(tenant)
                return rate
        return await self._read_rate(session, tenant)

    async def _read_rate(self, session: RecommendSession, tenant: str) -> float:
        engaged, shown = await session.engagement_totals(tenant)
        rate = smoothing.tenant_rate(engaged, shown, self._config.default_rate)
        self._rates[tenant] = (rate, self._clock())
        return rate

    def _refresh_rate(self, tenant: str) -> None:
        """Read the tenant's rate aside (once at a time per tenant); on a failure the
        next call past RATE_TTL_S tries again."""
        if tenant in self._refreshing:
            return

        async def refresh() -> None:
            try:
                async with self._reads.session() as session:
                    await self._read_rate(session, tenant)
            except Exception as exc:  # the stale rate stays in use
                log.warning("engagement_rate_refresh_failed", tenant=tenant, error=str(exc))

        task = asyncio.get_running_loop().create_task(refresh())
        self._refreshing[tenant] = task
        task.add_done_callback(lambda _: self._refreshing.pop(tenant, None))

    async def _complete(
        self,
        session: RecommendSession,
        space: SpaceRef,
        query: RecommendQuery,
        hits: list[RecommendHit],
        details: dict[str, CandidateDetails],
    ) -> list[RecommendHit]:
        """The full nodes and vectors of hits scored from slim details (a hit whose node
        was deleted since is dropped)."""
        ids = [h.node.id for h in hits if details[h.node.id].partial]
        if not ids:
            return hits
        full = await session.complete(space, query.tenant, query.vector_name, ids)
        for node_id, (node, vector) in full.items():
            details[node_id] = replace(details[node_id], node=node, vector=vector, partial=False)
        kept = []
        for hit in hits:
            detail = details[hit.node.id]
            if not detail.partial:
                hit.node = detail.node
                kept.append(hit)
        return kept


async def _both(first: Awaitable[_T], second: Awaitable[_U]) -> tuple[_T, _U]:
    """Both results; when one fails the other is cancelled and awaited, and the first
    error is raised as is."""
    one, two = asyncio.ensure_future(first), asyncio.ensure_future(second)
    await _settled([one, two])
    return one.result(), two.result()


async def _all(calls: Sequence[Awaitable[_T]]) -> list[_T]:
    """Every result, in order; on a failure as :func:`_both`."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    await _settled(tasks)
    return [task.result() for task in tasks]


async def _settled(tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Wait for every task; at the first failure cancel the others and wait for them too
    (none is left running on a connection about to go back to its pool), then raise it."""
    if not tasks:
        return
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        failed = [t for t in tasks if t in done and not t.cancelled() and t.exception()]
        if failed:
            failed[0].result()  # raises its error
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
