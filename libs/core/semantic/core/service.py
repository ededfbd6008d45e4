"""The search use cases: upsert, delete, get, search, nearest and stats over domain values.

A transport converts its wire format and calls these; the store behind the ports
(:mod:`semantic.core.ports`) runs the queries; ranking glue (fusion) is pure.

Degraded reads: when the primary path of Search or Nearest raises ``DependencyUnavailable``
for PostgreSQL and a local index is wired (:mod:`semantic.core.degraded`), the read is
answered from that index: dense only (a keyword or hybrid query is embedded and searched
densely, ``mode`` DENSE), content-type, tag and id filters only, ``degraded`` True.

Local-first dense search: while the local index is current, a dense search may take its
candidates from it, and PostgreSQL score only what changed since its sync
(:mod:`semantic.core.local_first`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import structlog

from semantic.common.errors import DependencyUnavailable, InvalidArgument, NotFound
from semantic.core import expansion, fusion
from semantic.core import modifiers as scoring
from semantic.core.degraded import DegradedReads, LocalIndex, check_supported
from semantic.core.domain import (
    DenseHit,
    Filter,
    Fusion,
    Hit,
    HybridParams,
    Mode,
    NodeRecord,
    SearchQuery,
    VectorTarget,
)
from semantic.core.feedback import FeedbackRecord, FeedbackResult, NodeFeedback
from semantic.core.filters import validate_filter
from semantic.core.local_first import LocalFirst
from semantic.core.local_sync import DEGRADED_READS
from semantic.core.modifiers import Rescoring
from semantic.core.nodes import DeleteOutcome, VectorRow, WriteResult
from semantic.core.ports import Embedder, NodeStore, Retrieval, SearchStatistics
from semantic.core.spaces import ActiveSpaces, Space, check_half_range
from semantic.core.writer import ContentWriter

log = structlog.get_logger(__name__)

Key = tuple[str, str]
Chooser = Callable[[NodeRecord], Sequence[scoring.Modifier]]


@dataclass
class SearchResult:
    """Hits (nodes attached) plus what the query cost."""

    hits: list[Hit]
    space: Space
    mode: Mode
    query_tokens: int = 0
    query_truncated: bool = False
    degraded: bool = False
    """Answered from the local index while PostgreSQL was unreachable."""
    fusion: Fusion | None = None
    """How the two sides of a hybrid search were fused (None for the other modes)."""
    expanded_with: list[str] = field(default_factory=list)
    """The first-pass hits a hybrid query's vector was expanded with, best first."""


@dataclass
class Stats:
    """Counts for Stats."""

    nodes_by_type: dict[str, int]
    active: Space | None
    spaces: list[Space]
    vectors: dict[int, int]
    relations: list[tuple[str, str, int]]
    missing: int = 0
    stale: int = 0
    extra: dict[str, int] = field(default_factory=dict)
    nodes_by_tenant: dict[str, int] = field(default_factory=dict)
    """Nodes of each tenant counted (one tenant unless every tenant was asked for)."""
    space_nodes: dict[int, int] = field(default_factory=dict)
    """Space id -> nodes with at least one vector there (of the tenant counted)."""
    users: int = 0
    """Users with at least one stored event."""
    user_events: int = 0


class SearchService:
    """Upsert, delete, get, search, nearest and stats over one database."""

    def __init__(
        self,
        spaces: ActiveSpaces,
        writer: ContentWriter,
        embedder: Embedder,
        retrieval: Retrieval,
        statistics: SearchStatistics,
        *,
        fallback: DegradedReads | None = None,
        rescoring: Rescoring | None = None,
        local_first: bool = False,
        local_first_max_busy: int = 0,
    ) -> None:
        """``fallback``: where reads go while PostgreSQL is unreachable (none: they fail);
        ``rescoring``: score modifiers' defaults and feedback (none: no defaults);
        ``local_first``: dense searches take their candidates from ``fallback`` while it is
        current and at most ``local_first_max_busy`` other dense searches are under way in
        this process (module doc)."""
        self._spaces = spaces
        self._local_first = (
            LocalFirst(fallback, retrieval, max_busy=local_first_max_busy)
            if local_first and fallback is not None
            else None
        )
        self._rescoring = rescoring or Rescoring()
        self._fallback = fallback
        self._nodes: NodeStore = writer.nodes
        self._writer = writer
        self._embedder = embedder
        self._retrieval = retrieval
        self._statistics = statistics

    async def space(self, space_id: int | None = None) -> Space:
        """The active space (through the one resolver and its cache), or the one asked for."""
        return await self._spaces.space(space_id)

    async def upsert(
        self,
        nodes: Sequence[NodeRecord],
        client_vectors: Mapping[Key, Sequence[VectorRow]],
        space_id: int | None = None,
    ) -> list[WriteResult]:
        """Store nodes and their vectors (embedding what changed)."""
        return await self._writer.upsert(await self.space(space_id), nodes, client_vectors)

    async def with_ids(self, nodes: Sequence[NodeRecord]) -> list[NodeRecord]:
        """``nodes`` with an id for each one given by slug alone: the id of the node holding
        that slug, else the slug itself (the node is created with it, as an event by slug
        creates it: a redelivery or a concurrent twin names the same node)."""
        wanted = [(n.tenant, n.slug) for n in nodes if not n.id and n.slug]
        if not wanted:
            return list(nodes)
        found = await self._nodes.ids_by_slug(wanted)
        return [
            n if n.id or not n.slug else replace(n, id=found.get((n.tenant, n.slug)) or n.slug)
            for n in nodes
        ]

    async def delete(
        self, tenant: str, ids: Sequence[str], slugs: Sequence[str], version: int
    ) -> list[tuple[str, str | None, DeleteOutcome]]:
        """Delete by id and slug. A slug no node holds is reported as not found; with a
        version, its delete still tombstones the id an upsert by that slug would create (the
        slug itself, unless another node has it), so an older upsert by that slug arriving
        later stays out, as with a delete event."""
        found = await self._nodes.ids_by_slug([(tenant, s) for s in slugs])
        by_slug = {slug: node_id for (_, slug), node_id in found.items()}
        targets = list(dict.fromkeys([*ids, *(by_slug[s] for s in slugs if s in by_slug)]))
        unheld = list(dict.fromkeys(s for s in slugs if s not in by_slug))
        tombstoned = [s for s in unheld if s not in targets] if version else []
        named = {by_slug[s]: s for s in slugs if s in by_slug}
        results = await self._nodes.delete(tenant, targets, version, tombstoned, named)
        missing = [s for s in unheld if s not in tombstoned]  # the store answers those
        return results + [("", slug, DeleteOutcome.NOT_FOUND) for slug in missing]

    async def get(
        self,
        tenant: str,
        ids: Sequence[str],
        slugs: Sequence[str],
        *,
        with_vectors: bool,
        space_id: int | None = None,
    ) -> tuple[list[NodeRecord], dict[str, list[VectorRow]]]:
        """Nodes by id/slug, with their vectors in a space when asked: those asked by id in
        request order, then those asked by slug; a node asked twice appears twice."""
        rows = await self._nodes.get(tenant, ids=ids, slugs=slugs)
        by_id = {n.id: n for n in rows}
        by_slug = {n.slug: n for n in rows if n.slug is not None}
        nodes = [by_id[i] for i in ids if i in by_id]
        nodes += [by_slug[s] for s in slugs if s in by_slug]
        vectors: dict[str, list[VectorRow]] = {}
        if with_vectors and nodes:
            space = await self._spaces.space(space_id)
            vectors = await self._nodes.vectors(space, tenant, [n.id for n in nodes])
        return nodes, vectors

    async def search(self, query: SearchQuery, space_id: int | None = None) -> SearchResult:
        """Dense, keyword or hybrid search with filters, min_score and pagination (from the
        local index while PostgreSQL is unreachable: module doc)."""
        validate_filter(query.filter)
        try:
            return await self._search(query, space_id)
        except DependencyUnavailable as exc:
            index = self._degraded_index(exc, space_id)
        return await self._degraded_search(index, query)

    async def _search(self, query: SearchQuery, space_id: int | None) -> SearchResult:
        space = await self.space(space_id)
        chooser = self._chooser(query.modifiers, query.default_modifiers)
        wanted = query.offset + query.top_k
        if chooser is not None:  # re-ranked from a larger pool, every candidate's node read
            wanted = max(wanted, self._rescoring.candidates)
        result = SearchResult([], space, query.mode)
        vector = query.vector
        if vector is not None and vector.size != space.dim:
            raise InvalidArgument(
                "vector", f"has {vector.size} dimensions, space {space.id} holds {space.dim}"
            )
        if vector is not None:
            check_half_range(vector, space.index_precision, "vector")
        if query.mode is not Mode.KEYWORD and vector is None:
            assert query.text is not None
            embedded = await self._embedder.embed(
                [query.text], input_type="query", model_id=space.model_id
            )
            vector = embedded.vectors[0]
            result.query_tokens, result.query_truncated = embedded.tokens[0], embedded.truncated[0]
        if query.mode is Mode.DENSE:
            assert vector is not None
            # The page's nodes come with the dense statement itself.
            attach = query.offset if chooser is None else 0
            hits = fusion.from_dense(await self._dense(space, query, vector, wanted, attach))
        elif query.mode is Mode.KEYWORD:
            if not query.text:
                raise InvalidArgument("text", "keyword search needs query text")
            hits = fusion.from_keyword(await self._retrieval.keyword(query, wanted))
        else:
            assert vector is not None
            assert query.text is not None
            assert query.hybrid is not None
            pool = max(wanted, query.hybrid.candidates)
            dense_hits, keyword_hits = await asyncio.gather(
                self._retrieval.dense(space, query, vector, pool),
                self._retrieval.keyword(query, pool),
            )
            params = query.hybrid
            hits = _fused(params, dense_hits, keyword_hits)
            if params.expansion_docs and params.expansion_weight > 0 and params.dense_weight > 0:
                first = [hit.node_id for hit in hits[: params.expansion_docs]]
                expanded, result.expanded_with = await self._expand(space, query, vector, first)
                if result.expanded_with:
                    dense_hits = await self._retrieval.dense(space, query, expanded, pool)
                    hits = _fused(params, dense_hits, keyword_hits)
            result.fusion = params.fusion
        if chooser is not None:
            await self._attach(query.tenant, hits)
            await self._rescore(query.tenant, hits, chooser)
        result.hits = fusion.page(fusion.above(hits, query.min_score), query.offset, query.top_k)
        await self._attach(query.tenant, result.hits)
        return result

    async def _dense(
        self,
        space: Space,
        query: SearchQuery,
        vector: np.ndarray[Any, Any],
        wanted: int,
        attach: int,
    ) -> list[DenseHit]:
        """The ``wanted`` nearest nodes: local-first when it is on, else PostgreSQL's index
        scan (node rows attached after ``attach`` hits)."""
        if self._local_first is not None:
            return await self._local_first.dense(space, query, vector, wanted, attach)
        return await self._retrieval.dense(space, query, vector, wanted, attach_after=attach)

    async def _expand(
        self, space: Space, query: SearchQuery, vector: np.ndarray[Any, Any], first: list[str]
    ) -> tuple[np.ndarray[Any, Any], list[str]]:
        """The query vector expanded with the first hits' vectors (``semantic.core.expansion``)
        and the hits that had one, best first."""
        assert query.hybrid is not None
        names = [target.name for target in query.targets]
        found = await self._retrieval.mean_vectors(space, query.tenant, first, names)
        used: list[str] = []
        feedback = []
        for node_id in first:
            hit_vector = expansion.hit_vector(found.get(node_id, {}), query.targets)
            if hit_vector is not None:
                used.append(node_id)
                feedback.append(hit_vector)
        return expansion.expanded(vector, feedback, query.hybrid.expansion_weight), used

    def _chooser(self, given: Sequence[scoring.Modifier], use_defaults: bool) -> Chooser | None:
        return self._rescoring.chooser(given, use_defaults)

    async def _rescore(self, tenant: str, hits: list[Hit], chooser: Chooser) -> None:
        """Apply the modifiers to ``hits`` (nodes attached), reading feedback when one of
        them needs it."""
        nodes = [h.node for h in hits if h.node is not None]
        values = await self._rescoring.feedback_of(tenant, nodes, chooser)
        scoring.apply(hits, chooser, values.get)

    async def record_feedback(self, items: Sequence[FeedbackRecord]) -> FeedbackResult:
        """Record feedback reports (one transaction)."""
        service = self._rescoring.feedback
        if service is None:
            raise DependencyUnavailable("feedback", "no feedback store is configured")
        return await service.record(items)

    async def feedback_of(self, tenant: str, ids: Sequence[str]) -> dict[str, NodeFeedback]:
        """The nodes' feedback counters and confidence (empty without a feedback store)."""
        service = self._rescoring.feedback
        return await service.of_nodes(tenant, ids) if service is not None else {}

    async def nearest(
        self,
        tenant: str,
        *,
        node_id: str | None,
        slug: str | None,
        vector_name: str,
        top_k: int,
        flt: Filter,
        min_score: float | None,
        space_id: int | None = None,
        modifiers: Sequence[scoring.Modifier] = (),
        default_modifiers: bool = True,
    ) -> tuple[str, SearchResult]:
        """The nodes closest to a node (by the mean of its chunks' vectors), excluding
        itself (from the local index while PostgreSQL is unreachable: module doc), re-ranked
        by score modifiers (the request's, else the defaults) when there are any."""
        validate_filter(flt)
        try:
            return await self._nearest(
                tenant,
                node_id=node_id,
                slug=slug,
                vector_name=vector_name,
                top_k=top_k,
                flt=flt,
                min_score=min_score,
                space_id=space_id,
                chooser=self._chooser(modifiers, default_modifiers),
            )
        except DependencyUnavailable as exc:
            index = self._degraded_index(exc, space_id)
        return self._degraded_nearest(
            index,
            tenant,
            node_id=node_id,
            slug=slug,
            vector_name=vector_name,
            top_k=top_k,
            flt=flt,
            min_score=min_score,
        )

    async def _nearest(
        self,
        tenant: str,
        *,
        node_id: str | None,
        slug: str | None,
        vector_name: str,
        top_k: int,
        flt: Filter,
        min_score: float | None,
        space_id: int | None,
        chooser: Chooser | None,
    ) -> tuple[str, SearchResult]:
        space = await self.space(space_id)
        found = await self._nodes.centre(
            space, tenant, node_id=node_id or None, slug=None if node_id else slug, name=vector_name
        )
        if found is None:
            raise NotFound("node", f"slug={slug}" if slug else f"id={node_id}")
        source_id, centre = found
        if centre is None:
            raise NotFound("vector", f"{vector_name!r} of node {source_id!r} in space {space.id}")
        query = SearchQuery(
            tenant=tenant,
            mode=Mode.DENSE,
            vector=centre,
            targets=(VectorTarget(vector_name),),
            filter=flt,
            top_k=top_k,
            min_score=min_score,
        )
        pool = top_k if chooser is None else max(top_k, self._rescoring.candidates)
        # One more than wanted, the source left out here: excluding it in the filter would
        # turn an unfiltered search into a filtered one (a count of the matching nodes first).
        dense_hits = await self._dense(space, query, centre, pool + 1, 0)
        hits = fusion.from_dense([h for h in dense_hits if h.node_id != source_id][:pool])
        if chooser is not None:
            await self._attach(tenant, hits)
            await self._rescore(tenant, hits, chooser)
        result = SearchResult(fusion.above(hits, min_score)[:top_k], space, Mode.DENSE)
        await self._attach(tenant, result.hits)
        return source_id, result

    # --- degraded reads ---------------------------------------------------------------------

    def _degraded_index(self, cause: DependencyUnavailable, space_id: int | None) -> LocalIndex:
        """The local index that answers instead, or ``cause`` again when there is none
        (another dependency, no fallback wired, another space asked for)."""
        if self._fallback is None or cause.dependency != "postgresql":
            raise cause
        index = self._fallback.reader(cause)
        if index.space is None or (space_id is not None and space_id != index.space.id):
            raise cause
        return index

    async def _degraded_search(self, index: LocalIndex, query: SearchQuery) -> SearchResult:
        check_supported(query.filter)
        space = index.space
        assert space is not None
        result = SearchResult([], space, Mode.DENSE, degraded=True)
        vector = query.vector
        if vector is not None and vector.size != space.dim:
            raise InvalidArgument(
                "vector", f"has {vector.size} dimensions, space {space.id} holds {space.dim}"
            )
        if vector is None:
            if not query.text:
                raise InvalidArgument("text", "give query text or a query vector")
            embedded = await self._embedder.embed(
                [query.text], input_type="query", model_id=space.model_id
            )
            vector = embedded.vectors[0]
            result.query_tokens, result.query_truncated = embedded.tokens[0], embedded.truncated[0]
        wanted = query.offset + query.top_k
        targets = query.targets if query.mode is Mode.DENSE else (VectorTarget(),)
        hits = fusion.from_dense(index.search(query.tenant, vector, targets, query.filter, wanted))
        result.hits = fusion.page(fusion.above(hits, query.min_score), query.offset, query.top_k)
        DEGRADED_READS.labels("Search").inc()
        return result

    def _degraded_nearest(
        self,
        index: LocalIndex,
        tenant: str,
        *,
        node_id: str | None,
        slug: str | None,
        vector_name: str,
        top_k: int,
        flt: Filter,
        min_score: float | None,
    ) -> tuple[str, SearchResult]:
        check_supported(flt)
        space = index.space
        assert space is not None
        source = index.node(tenant, node_id=node_id, slug=slug)
        if source is None:
            raise NotFound("node", f"slug={slug}" if slug else f"id={node_id}")
        rows = index.vectors(source.key, vector_name)
        if not rows:
            raise NotFound("vector", f"{vector_name!r} of node {source.id!r} in space {space.id}")
        centre = np.mean(np.stack([np.asarray(r, dtype=np.float32) for r in rows]), axis=0)
        flt = Filter(**{**flt.__dict__, "exclude_ids": (*flt.exclude_ids, source.id)})
        found = index.search(tenant, centre, (VectorTarget(vector_name),), flt, top_k)
        hits = fusion.above(fusion.from_dense(found), min_score)[:top_k]
        DEGRADED_READS.labels("Nearest").inc()
        return source.id, SearchResult(hits, space, Mode.DENSE, degraded=True)

    async def _attach(self, tenant: str, hits: list[Hit]) -> None:
        """Read the nodes of the hits that do not carry theirs yet (one query, or none)."""
        missing = [h.node_id for h in hits if h.node is None]
        if missing:
            nodes = await self._nodes.get(tenant, ids=missing)
            by_id = {n.id: n for n in nodes}
            for hit in hits:
                if hit.node is None:
                    hit.node = by_id.get(hit.node_id)
        hits[:] = [h for h in hits if h.node is not None]  # deleted between the two reads

    async def stats(self, tenant: str | None, *, sizes: bool) -> Stats:
        """Nodes, vectors, users and events of ``tenant`` (None: every tenant), the heal
        backlog of the active space; ``sizes``: the tables' and indexes' sizes too (which
        count every tenant's rows: for callers who may see every tenant)."""
        return await self._statistics.stats(tenant, sizes=sizes)


def _fused(
    params: HybridParams, dense_hits: Sequence[DenseHit], keyword_hits: Sequence[tuple[str, float]]
) -> list[Hit]:
    return fusion.fuse(
        dense_hits,
        keyword_hits,
        rrf_k=params.rrf_k,
        dense_weight=params.dense_weight,
        keyword_weight=params.keyword_weight,
        fusion=params.fusion,
    )
