"""Recommend: candidates near the user's journey (or the request's examples), plus the
archetype's and the global popular nodes, scored by a weighted sum of explainable parts:

    score = w_sim * similarity        cosine to the journey vector / the examples
          + w_eng * engagement        (clicks + likes + conversions + a * p0) / (impressions + a)
          + w_rec * recency           0.5 ** (age of updated_at / half-life)
          + w_arch * archetype_prior  the archetype's engagement with the node / its best node

``a`` is the prior strength (pseudo-impressions) and ``p0`` the tenant's mean rate, so a
node with one view and one click does not beat one with a thousand views and three
hundred clicks. Dismissed nodes are always excluded, converted ones unless asked, seen
ones when asked. Diversity: MMR re-ranking when ``mmr_lambda`` is given, then a cap on the
share of one content type. A user without history gets the archetype's popular nodes,
then the global popular ones; never an error.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, TypeVar

import asyncpg
import numpy as np
import structlog

from semantic.common.errors import InvalidArgument, NotFound
from semantic.core.domain import Filter, NodeRecord, VectorTarget
from semantic.core.filters import validate_filter
from semantic.core.spaces import Space
from semantic.search.recommend.tracking import (
    Action,
    Journey,
    TrackConfig,
    node_vectors,
    replay_journey,
)
from semantic.store.postgres import dense
from semantic.store.postgres.db import ReadConnections, as_array
from semantic.store.postgres.filters import compile_filter
from semantic.store.postgres.node_rows import node_from_row, node_select

log = structlog.get_logger(__name__)
_T = TypeVar("_T")
_U = TypeVar("_U")

Source = Literal["journey", "examples", "archetype_popular", "global_popular"]
Strategy = Literal["average_vector", "best_score"]
_SEEN = "seen"


@dataclass(frozen=True)
class RecommendConfig:
    """Defaults of the scoring and the candidate pools (from settings)."""

    similarity_weight: float = 1.0
    engagement_weight: float = 0.3
    recency_weight: float = 0.1
    archetype_weight: float = 0.2
    prior_strength: float = 20.0
    default_rate: float = 0.05
    recency_half_life_days: float = 30.0
    candidates: int = 100
    popular_candidates: int = 50
    max_top_k: int = 100
    max_examples: int = 64
    similar_items: int = 3
    journey_items: int = 20
    max_share_per_content_type: float = 1.0
    ef_search: int = 100
    exact_threshold: int = 2000


@dataclass(frozen=True)
class Example:
    """A positive or negative example: a node (id or slug) or a raw vector."""

    node_id: str = ""
    slug: str = ""
    vector: np.ndarray[Any, Any] | None = None


@dataclass(frozen=True)
class RecommendQuery:
    """A validated Recommend request."""

    tenant: str
    user_id: str = ""
    archetype: str = ""
    top_k: int = 10
    filter: Filter = field(default_factory=Filter)
    max_share: float | None = None
    mmr_lambda: float | None = None
    exclude_seen: bool = False
    include_converted: bool = False
    positive: tuple[Example, ...] = ()
    negative: tuple[Example, ...] = ()
    strategy: Strategy = "average_vector"
    vector_name: str = "content"
    weights: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Part:
    """One part of a score."""

    value: float
    weight: float

    @property
    def contribution(self) -> float:
        """value x weight."""
        return self.value * self.weight


@dataclass(frozen=True)
class Similar:
    """A journey item or example a recommended node resembles."""

    node_id: str
    slug: str
    title: str
    similarity: float
    action: int = 0
    occurred_at: datetime | None = None
    negative: bool = False


@dataclass
class RecommendHit:
    """One recommended node and why."""

    node: NodeRecord
    source: Source
    similarity: Part
    engagement: Part
    recency: Part
    archetype_prior: Part
    counts: dict[str, int]
    similar_to: list[Similar] = field(default_factory=list)
    mmr_score: float | None = None

    @property
    def score(self) -> float:
        """Sum of the parts' contributions."""
        return (
            self.similarity.contribution
            + self.engagement.contribution
            + self.recency.contribution
            + self.archetype_prior.contribution
        )


@dataclass
class RecommendResult:
    """Hits in final order and the context they came from."""

    hits: list[RecommendHit]
    recommendation_id: str
    archetype: str
    journey_events: int
    space: Space


@dataclass
class _Candidate:
    node_id: str
    source: Source


class Recommender:
    """Scores candidates for a user or for examples; reads only."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        config: RecommendConfig | None = None,
        track: TrackConfig | None = None,
    ) -> None:
        self._pool = pool
        self._config = config or RecommendConfig()
        self._track = track or TrackConfig()
        self._rates: dict[str, tuple[float, float]] = {}  # tenant -> (rate, read at)
        self._reads = ReadConnections(pool)

    @property
    def config(self) -> RecommendConfig:
        """Defaults in use."""
        return self._config

    async def recommend(self, space: Space, query: RecommendQuery) -> RecommendResult:
        """The top_k recommendations for ``query`` (see the module doc)."""
        validate_filter(query.filter)
        config = self._config
        weights = {
            "similarity": query.weights.get("similarity", config.similarity_weight),
            "engagement": query.weights.get("engagement", config.engagement_weight),
            "recency": query.weights.get("recency", config.recency_weight),
            "archetype_prior": query.weights.get("archetype_prior", config.archetype_weight),
        }
        async with self._reads.reading() as conn:
            user = await self._user(conn, space, query)
            examples_pos = await self._examples(conn, space, query, query.positive, "positive")
            examples_neg = await self._examples(conn, space, query, query.negative, "negative")
            example_ids = {e[0] for e in (*examples_pos, *examples_neg) if e[0]}
            given = query.archetype or user.archetype
            excluded = set(user.excluded) | example_ids
            flt = replace(
                query.filter, exclude_ids=tuple(sorted({*query.filter.exclude_ids, *excluded}))
            )
            candidates: dict[str, _Candidate] = {}
            query_vectors: list[np.ndarray[Any, Any]] = []
            negatives: list[np.ndarray[Any, Any]] = [v for _, v in examples_neg]
            positives: list[np.ndarray[Any, Any]] = [v for _, v in examples_pos]
            source: Source
            if positives or negatives:
                source = "examples"
                if query.strategy == "best_score" and positives:
                    query_vectors = positives
                else:
                    query_vectors = [_average_vector(positives, negatives)]
            else:
                source = "journey"
                journey_vector = user.journey.vector()
                if journey_vector is not None:
                    query_vectors = [journey_vector]
            # At most one query vector scoring every candidate (no best_score over examples,
            # no MMR comparing candidates with each other): the cosine is computed in SQL and
            # only the final hits' rows and vectors are read in full (``_complete``).
            best_of_examples = query.strategy == "best_score" and bool(positives or negatives)
            slim = len(query_vectors) <= 1 and not best_of_examples and query.mmr_lambda is None
            similarity_to = query_vectors[0] if slim and query_vectors else None
            want_items = source == "journey" and bool(query_vectors)

            async def nearest(on: asyncpg.Connection) -> list[list[str]]:
                return [await self._dense(on, space, query, flt, v) for v in query_vectors]

            async def aside(on: asyncpg.Connection) -> _Aside:
                archetype = given or await self._derived(on, space, query.tenant, user.journey)
                popular, best = await self._popular(on, query, flt, archetype)
                ids = list(dict.fromkeys(node_id for node_id, _ in popular))
                return _Aside(
                    archetype,
                    popular,
                    best,
                    await self._details(
                        on, space, query, archetype, ids, slim=slim, similarity_to=similarity_to
                    ),
                    await self._journey_items(on, space, query, user) if want_items else [],
                    await self._rate(on, query.tenant),
                )

            async def rest_details(on: asyncpg.Connection, ids: list[str]) -> dict[str, _Details]:
                return await self._details(
                    on, space, query, side.archetype, ids, slim=slim, similarity_to=similarity_to
                )

            # The nearest nodes on this connection while the archetype, the popular nodes,
            # their details and the journey items are read on a second one, when one is
            # idle; then the details of the nearest nodes, half on each.
            async with self._spare(bool(query_vectors)) as spare:
                if spare is None:
                    found, side = await nearest(conn), await aside(conn)
                else:
                    found, side = await _both(nearest(conn), aside(spare))
                for nodes in found:
                    for node_id in nodes:
                        candidates.setdefault(node_id, _Candidate(node_id, source))
                for node_id, from_archetype in side.popular:
                    kind: Source = "archetype_popular" if from_archetype else "global_popular"
                    candidates.setdefault(node_id, _Candidate(node_id, kind))
                details = dict(side.details)
                rest = [node_id for node_id in candidates if node_id not in details]
                if spare is None:
                    details.update(await rest_details(conn, rest))
                else:
                    half = (len(rest) + 1) // 2
                    first, second = await _both(
                        rest_details(conn, rest[:half]), rest_details(spare, rest[half:])
                    )
                    details.update(first)
                    details.update(second)
            archetype, best_archetype_score = side.archetype, side.best
            journey_items, rate = side.journey_items, side.rate
            scored = self._score(
                query,
                candidates,
                details,
                _Scoring(weights, query_vectors, positives, negatives, best_archetype_score, rate),
            )
            hits = self._diversify(query, scored, details, weights)
            hits = await self._complete(conn, space, query, hits, details)
        self._explain(hits, details, journey_items, examples_pos, examples_neg)
        return RecommendResult(
            hits=hits,
            recommendation_id=str(uuid.uuid4()),
            archetype=archetype or "",
            journey_events=user.events,
            space=space,
        )

    # --- reading -------------------------------------------------------------------

    @asynccontextmanager
    async def _spare(self, wanted: bool) -> AsyncIterator[asyncpg.Connection | None]:
        """A second connection if ``wanted`` and the pool has an idle one now, else None: a
        request that holds a connection never waits for another (no deadlock when the pool
        runs dry)."""
        if not wanted or self._pool.get_idle_size() == 0:
            yield None
            return
        async with self._reads.reading() as conn:
            yield conn

    async def _user(self, conn: asyncpg.Connection, space: Space, query: RecommendQuery) -> _User:
        if not query.user_id:
            return _User()
        # One round trip: the user's row (if any) and the nodes to exclude (of the 5,000
        # most recent dismissed, converted or, with exclude_seen, seen ones).
        row = await conn.fetchrow(
            "SELECT u.user_id IS NOT NULL AS found, u.archetype, u.space_id, u.journey_sum,"
            " u.journey_weight, u.journey_at, u.events,"
            " ARRAY(SELECT s.node_id FROM (SELECT node_id, seen, converted, dismissed"
            "   FROM semantic.user_nodes WHERE tenant = $1 AND user_id = $2"
            "   AND (dismissed OR converted OR $3) ORDER BY last_at DESC LIMIT 5000) AS s"
            "  WHERE s.dismissed OR (s.converted AND NOT $4) OR (s.seen AND $3)) AS excluded"
            " FROM (SELECT 1) AS one"
            " LEFT JOIN semantic.users u ON u.tenant = $1 AND u.user_id = $2",
            query.tenant,
            query.user_id,
            query.exclude_seen,
            query.include_converted,
        )
        assert row is not None  # the statement always returns one row
        excluded = list(row["excluded"])
        if not row["found"]:
            return _User(excluded=excluded)
        journey = Journey.from_row(row, space)
        if row["space_id"] not in (None, space.id) and row["events"]:
            journey = await replay_journey(conn, space, query.tenant, query.user_id, self._track)
        return _User(row["archetype"] or "", journey, int(row["events"]), excluded)

    async def _examples(
        self,
        conn: asyncpg.Connection,
        space: Space,
        query: RecommendQuery,
        examples: Sequence[Example],
        field_name: str,
    ) -> list[tuple[str, np.ndarray[Any, Any]]]:
        """(node id or '', unit vector) per example."""
        if len(query.positive) + len(query.negative) > self._config.max_examples:
            raise InvalidArgument(
                "positive", f"at most {self._config.max_examples} examples with negative"
            )
        named = [e for e in examples if e.vector is None]
        ids: dict[str, str] = {}
        if named:
            rows = await conn.fetch(
                "SELECT id, slug FROM semantic.nodes WHERE tenant = $1"
                " AND (id = ANY($2::text[]) OR slug = ANY($3::text[]))",
                query.tenant,
                [e.node_id for e in named if e.node_id],
                [e.slug for e in named if e.slug],
            )
            for r in rows:
                ids[r["id"]] = r["id"]
                if r["slug"]:
                    ids[f"slug:{r['slug']}"] = r["id"]
        vectors = await node_vectors(
            conn, space, {(query.tenant, i) for i in set(ids.values())}, query.vector_name
        )
        out = []
        for index, example in enumerate(examples):
            if example.vector is not None:
                if example.vector.size != space.dim:
                    raise InvalidArgument(
                        f"{field_name}[{index}].vector",
                        f"has {example.vector.size} dimensions, the space holds {space.dim}",
                    )
                out.append(("", _unit(example.vector)))
                continue
            key = example.node_id or f"slug:{example.slug}"
            node_id = ids.get(key)
            if node_id is None:
                what = f"id={example.node_id}" if example.node_id else f"slug={example.slug}"
                raise NotFound("node", f"{field_name}[{index}] {what}")
            vector = vectors.get((query.tenant, node_id))
            if vector is None:
                raise NotFound("vector", f"{query.vector_name!r} of node {node_id!r}")
            out.append((node_id, _unit(vector)))
        return out

    async def _derived(
        self, conn: asyncpg.Connection, space: Space, tenant: str, journey: Journey
    ) -> str:
        """The nearest derived archetype centroid to the journey, if any were derived."""
        vector = journey.vector()
        if vector is None:
            return ""
        rows = await conn.fetch(
            "SELECT label, centroid FROM semantic.archetype_centroids"
            " WHERE tenant = $1 AND space_id = $2",
            tenant,
            space.id,
        )
        if not rows:
            return ""
        centroids = np.asarray([r["centroid"] for r in rows], np.float32)
        return str(rows[int(np.argmax(centroids @ vector))]["label"])

    async def _dense(
        self,
        conn: asyncpg.Connection,
        space: Space,
        query: RecommendQuery,
        flt: Filter,
        vector: np.ndarray[Any, Any],
    ) -> list[str]:
        """The ``limit`` nearest nodes to ``vector`` that pass ``flt``, nearest first.

        When ``flt`` only excludes ids (a user's seen, converted or dismissed nodes, the
        examples) and not more than ``limit`` of them, the index is scanned without a filter
        for ``limit`` + that many nodes and the excluded ones are dropped here: the same
        nodes, without counting the matching nodes and joining every index row to its node.
        """
        limit = max(self._config.candidates, query.top_k * 4)
        excluded = set(flt.exclude_ids)
        post_filter = replace(flt, exclude_ids=()).is_empty and len(excluded) <= limit
        sql, params = compile_filter(query.tenant, Filter() if post_filter else flt, start=1)
        hits = await dense.dense_search(
            conn,
            space.table,
            query.tenant,
            vector,
            targets=(VectorTarget(query.vector_name),),
            filter_sql=sql,
            filter_params=params,
            limit=limit + len(excluded) if post_filter else limit,
            ef_search=max(self._config.ef_search, limit),
            exact_threshold=self._config.exact_threshold,
            filtered=not post_filter,
        )
        return [h.node_id for h in hits if h.node_id not in excluded][:limit]

    async def _popular(
        self, conn: asyncpg.Connection, query: RecommendQuery, flt: Filter, archetype: str
    ) -> tuple[list[tuple[str, bool]], float]:
        """Popular node ids (archetype first) and the archetype's best score."""
        sql, params = compile_filter(query.tenant, flt, start=1)
        limit = max(self._config.popular_candidates, query.top_k * 2)
        n = len(params)
        rows = await conn.fetch(
            "(SELECT a.node_id, true AS from_archetype, a.score AS rank,"
            f"  (SELECT max(score) FROM semantic.archetype_engagement"
            f"   WHERE tenant = ${n + 1} AND archetype = ${n + 2}) AS best"
            " FROM semantic.archetype_engagement a"
            " JOIN semantic.nodes n ON n.tenant = a.tenant AND n.id = a.node_id"
            f" WHERE a.tenant = ${n + 1} AND a.archetype = ${n + 2} AND {sql}"
            f" ORDER BY a.score DESC LIMIT ${n + 3})"
            " UNION ALL"
            " (SELECT e.node_id, false, e.popularity, NULL"
            " FROM semantic.node_engagement e"
            " JOIN semantic.nodes n ON n.tenant = e.tenant AND n.id = e.node_id"
            f" WHERE e.tenant = ${n + 1} AND {sql} AND e.popularity > 0"
            f" ORDER BY e.popularity DESC LIMIT ${n + 3})",
            *params,
            query.tenant,
            archetype or "",
            limit,
        )
        best = max((float(r["best"] or 0.0) for r in rows if r["from_archetype"]), default=0.0)
        return [(r["node_id"], bool(r["from_archetype"])) for r in rows], best

    async def _details(
        self,
        conn: asyncpg.Connection,
        space: Space,
        query: RecommendQuery,
        archetype: str,
        ids: list[str],
        *,
        slim: bool = False,
        similarity_to: np.ndarray[Any, Any] | None = None,
    ) -> dict[str, _Details]:
        """What scoring needs of each candidate: ``slim``, only the node's id, type and
        update time (``_complete`` reads the rest for the final hits) and, given
        ``similarity_to``, the cosine of the node's vector (mean of its chunks) to it;
        else the full node row and its vector."""
        if not ids:
            return {}
        vector_sql = (
            f"(SELECT avg(v.embedding) FROM {space.table} v WHERE v.tenant = n.tenant"
            "   AND v.node_id = n.id AND v.name = $4)"
        )
        slim_columns = "n.tenant, n.id, n.content_type, n.updated_at"
        extra: tuple[Any, ...] = (query.vector_name,)
        if not slim:
            columns = f"{node_select('n')}, NULL::float8 AS similarity, {vector_sql} AS vector"
        elif similarity_to is not None:
            columns = f"{slim_columns}, 1.0 - ({vector_sql} <=> $5) AS similarity, NULL AS vector"
            extra = (query.vector_name, similarity_to)
        else:
            columns = f"{slim_columns}, NULL::float8 AS similarity, NULL AS vector"
            extra = ()
        rows = await conn.fetch(
            f"SELECT {columns}, coalesce(e.impressions, 0) AS impressions,"
            " coalesce(e.views, 0) AS views, coalesce(e.clicks, 0) AS clicks,"
            " coalesce(e.likes, 0) AS likes, coalesce(e.conversions, 0) AS conversions,"
            " coalesce(e.dismissals, 0) AS dismissals, coalesce(a.score, 0) AS archetype_score"
            " FROM semantic.nodes n"
            # Primary-key lookups per candidate (LIMIT 1 keeps the planner from joining
            # the whole engagement tables instead).
            " LEFT JOIN LATERAL (SELECT * FROM semantic.node_engagement"
            "   WHERE tenant = n.tenant AND node_id = n.id LIMIT 1) AS e ON true"
            " LEFT JOIN LATERAL (SELECT score FROM semantic.archetype_engagement"
            "   WHERE tenant = n.tenant AND archetype = $3 AND node_id = n.id LIMIT 1) AS a"
            "   ON true"
            " WHERE n.tenant = $1 AND n.id = ANY($2::text[])",
            query.tenant,
            ids,
            archetype or "",
            *extra,
        )
        out = {}
        for r in rows:
            vector, similarity = r["vector"], r["similarity"]
            out[r["id"]] = _Details(
                node=NodeRecord(
                    tenant=r["tenant"],
                    id=r["id"],
                    content_type=r["content_type"],
                    updated_at=r["updated_at"],
                )
                if slim
                else node_from_row(r),
                counts={k: int(r[k]) for k in _COUNTS},
                archetype_score=float(r["archetype_score"]),
                vector=_unit(as_array(vector)) if vector is not None else None,
                similarity=float(similarity) if similarity is not None else None,
                partial=slim,
            )
        return out

    async def _complete(
        self,
        conn: asyncpg.Connection,
        space: Space,
        query: RecommendQuery,
        hits: list[RecommendHit],
        details: dict[str, _Details],
    ) -> list[RecommendHit]:
        """The full node rows and vectors of hits scored from slim details (a hit whose
        node was deleted since is dropped)."""
        ids = [h.node.id for h in hits if details[h.node.id].partial]
        if not ids:
            return hits
        rows = await conn.fetch(
            f"SELECT {node_select('n')},"
            f" (SELECT avg(v.embedding) FROM {space.table} v WHERE v.tenant = n.tenant"
            "   AND v.node_id = n.id AND v.name = $3) AS vector"
            " FROM semantic.nodes n WHERE n.tenant = $1 AND n.id = ANY($2::text[])",
            query.tenant,
            ids,
            query.vector_name,
        )
        for r in rows:
            vector = r["vector"]
            details[r["id"]] = replace(
                details[r["id"]],
                node=node_from_row(r),
                vector=_unit(as_array(vector)) if vector is not None else None,
                partial=False,
            )
        kept = []
        for hit in hits:
            detail = details[hit.node.id]
            if not detail.partial:
                hit.node = detail.node
                kept.append(hit)
        return kept

    async def _journey_items(
        self, conn: asyncpg.Connection, space: Space, query: RecommendQuery, user: _User
    ) -> list[tuple[Similar, np.ndarray[Any, Any]]]:
        rows = await conn.fetch(
            "SELECT s.node_id, s.strongest, s.last_at, s.dismissed, n.slug, n.title,"
            f" (SELECT avg(v.embedding) FROM {space.table} v WHERE v.tenant = s.tenant"
            "   AND v.node_id = s.node_id AND v.name = $5) AS vector"
            " FROM semantic.user_nodes s JOIN semantic.nodes n"
            "   ON n.tenant = s.tenant AND n.id = s.node_id"
            " WHERE s.tenant = $1 AND s.user_id = $2 AND s.strongest > $3"
            " ORDER BY s.last_at DESC LIMIT $4",
            query.tenant,
            query.user_id,
            int(Action.IMPRESSION),
            self._config.journey_items,
            query.vector_name,
        )
        items = []
        for r in rows:
            if r["vector"] is None:
                continue
            vector = as_array(r["vector"])
            item = Similar(
                node_id=r["node_id"],
                slug=r["slug"] or "",
                title=r["title"],
                similarity=0.0,
                action=int(r["strongest"]),
                occurred_at=r["last_at"],
                negative=bool(r["dismissed"]),
            )
            items.append((item, _unit(vector)))
        return items

    async def _rate(self, conn: asyncpg.Connection, tenant: str) -> float:
        """The tenant's mean engagement rate p0 (cached for 10 s)."""
        cached = self._rates.get(tenant)
        if cached is not None and time.monotonic() - cached[1] < 10:
            return cached[0]
        row = await conn.fetchrow(
            "SELECT sum(clicks + likes + conversions)::float8 AS engaged,"
            " sum(impressions)::float8 AS shown FROM semantic.node_engagement WHERE tenant = $1",
            tenant,
        )
        shown = float(row["shown"] or 0) if row else 0.0
        rate = self._config.default_rate
        if shown >= 100:
            rate = min(1.0, float(row["engaged"] or 0) / shown) if row else rate
        self._rates[tenant] = (rate, time.monotonic())
        return rate

    # --- scoring ---------------------------------------------------------------------

    def _score(
        self,
        query: RecommendQuery,
        candidates: Mapping[str, _Candidate],
        details: Mapping[str, _Details],
        scoring: _Scoring,
    ) -> list[_Scored]:
        """Every candidate's parts and score, best first (ties by node id); the hits
        themselves are made only for the candidates ``_diversify`` keeps."""
        weights, query_vectors = scoring.weights, scoring.query_vectors
        positives, negatives = scoring.positives, scoring.negatives
        best_archetype, rate = scoring.best_archetype, scoring.rate
        w_sim, w_eng = weights["similarity"], weights["engagement"]
        w_rec, w_arch = weights["recency"], weights["archetype_prior"]
        now = datetime.now(UTC)
        a = self._config.prior_strength
        half_life = self._config.recency_half_life_days
        scored = []
        for node_id, candidate in candidates.items():
            detail = details.get(node_id)
            if detail is None:
                continue
            vector = detail.vector
            similarity = 0.0
            if detail.similarity is not None:
                similarity = detail.similarity
            elif vector is not None:
                if query.strategy == "best_score" and (positives or negatives):
                    similarity = _best_score(vector, positives, negatives)
                elif query_vectors:
                    similarity = float(np.dot(query_vectors[0], vector))
            counts = detail.counts
            engaged = counts["clicks"] + counts["likes"] + counts["conversions"]
            shown = max(counts["impressions"], engaged)
            engagement = (engaged + a * rate) / (shown + a) if a + shown > 0 else 0.0
            engagement = min(1.0, engagement)
            updated = detail.node.updated_at or now
            age_days = max(0.0, (now - updated).total_seconds() / 86400)
            recency = 0.5 ** (age_days / half_life) if half_life > 0 else 0.0
            prior = detail.archetype_score / best_archetype if best_archetype > 0 else 0.0
            prior = min(1.0, max(0.0, prior))
            # The same sum, in the same order, as RecommendHit.score.
            score = similarity * w_sim + engagement * w_eng + recency * w_rec + prior * w_arch
            scored.append(
                _Scored(
                    score,
                    detail.node.id,
                    candidate.source,
                    detail,
                    similarity,
                    engagement,
                    recency,
                    prior,
                )
            )
        scored.sort(key=lambda s: (-s.score, s.node_id))
        return scored

    def _diversify(
        self,
        query: RecommendQuery,
        scored: list[_Scored],
        details: Mapping[str, _Details],
        weights: Mapping[str, float],
    ) -> list[RecommendHit]:
        hits: Sequence[RecommendHit | _Scored] = scored
        if query.mmr_lambda is not None and scored:
            hits = _mmr([s.hit(weights) for s in scored], details, query.mmr_lambda, len(scored))
        share = (
            query.max_share
            if query.max_share is not None
            else (self._config.max_share_per_content_type)
        )
        cap = max(1, math.floor(share * query.top_k + 1e-9))
        per_type: dict[str, int] = {}
        chosen = []
        for hit in hits:
            kind = hit.node.content_type
            if per_type.get(kind, 0) >= cap:
                continue
            per_type[kind] = per_type.get(kind, 0) + 1
            chosen.append(hit.hit(weights) if isinstance(hit, _Scored) else hit)
            if len(chosen) == query.top_k:
                break
        return chosen

    def _explain(
        self,
        hits: list[RecommendHit],
        details: Mapping[str, _Details],
        journey: list[tuple[Similar, np.ndarray[Any, Any]]],
        positives: list[tuple[str, np.ndarray[Any, Any]]],
        negatives: list[tuple[str, np.ndarray[Any, Any]]],
    ) -> None:
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
            if own is None:
                continue
            sims = matrix @ own
            order = np.argsort(-sims)[: self._config.similar_items]
            hit.similar_to = [replace(items[i][0], similarity=float(sims[i])) for i in order]


_COUNTS = ("impressions", "views", "clicks", "likes", "conversions", "dismissals")


@dataclass
class _User:
    archetype: str = ""
    journey: Journey = field(default_factory=Journey.empty)
    events: int = 0
    excluded: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Scoring:
    weights: Mapping[str, float]
    query_vectors: list[np.ndarray[Any, Any]]
    positives: list[np.ndarray[Any, Any]]
    negatives: list[np.ndarray[Any, Any]]
    best_archetype: float
    rate: float


class _Scored(NamedTuple):
    """A candidate's score and parts, before it becomes a RecommendHit."""

    score: float
    node_id: str
    source: Source
    detail: _Details
    similarity: float
    engagement: float
    recency: float
    prior: float

    @property
    def node(self) -> NodeRecord:
        """The candidate's node (as read for scoring)."""
        return self.detail.node

    def hit(self, weights: Mapping[str, float]) -> RecommendHit:
        """The RecommendHit with these parts."""
        return RecommendHit(
            node=self.detail.node,
            source=self.source,
            similarity=Part(self.similarity, weights["similarity"]),
            engagement=Part(self.engagement, weights["engagement"]),
            recency=Part(self.recency, weights["recency"]),
            archetype_prior=Part(self.prior, weights["archetype_prior"]),
            counts=dict(self.detail.counts),
        )


@dataclass(frozen=True)
class _Aside:
    """The reads that do not depend on the nearest nodes."""

    archetype: str
    popular: list[tuple[str, bool]]
    best: float
    details: dict[str, _Details]
    journey_items: list[tuple[Similar, np.ndarray[Any, Any]]]
    rate: float


async def _both(first: Awaitable[_T], second: Awaitable[_U]) -> tuple[_T, _U]:
    """Both results; when one fails the other is cancelled and awaited, and the first
    error is raised as is."""
    one, two = asyncio.ensure_future(first), asyncio.ensure_future(second)
    try:
        return await one, await two
    finally:
        for task in (one, two):
            if not task.done():
                task.cancel()
        await asyncio.gather(one, two, return_exceptions=True)


@dataclass
class _Details:
    node: NodeRecord
    counts: dict[str, int]
    archetype_score: float
    vector: np.ndarray[Any, Any] | None
    similarity: float | None = None  # cosine to the query vector, computed in SQL
    partial: bool = False  # node holds id, type and update time only (until _complete)


def _unit(vector: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    array = np.asarray(vector, np.float32)
    norm = float(np.linalg.norm(array))
    return array / norm if norm > 0 else array


def _average_vector(
    positives: list[np.ndarray[Any, Any]], negatives: list[np.ndarray[Any, Any]]
) -> np.ndarray[Any, Any]:
    """mean(P) + (mean(P) - mean(N)); mean(P) without negatives; -mean(N) without positives."""
    if positives and negatives:
        p, n = np.mean(positives, axis=0), np.mean(negatives, axis=0)
        return _unit(p + (p - n))
    if positives:
        return _unit(np.mean(positives, axis=0))
    return _unit(-np.mean(negatives, axis=0))


def _best_score(
    vector: np.ndarray[Any, Any],
    positives: list[np.ndarray[Any, Any]],
    negatives: list[np.ndarray[Any, Any]],
) -> float:
    """Best positive similarity if it beats the best negative one, else minus the latter."""
    best_pos = max((float(np.dot(vector, p)) for p in positives), default=-math.inf)
    best_neg = max((float(np.dot(vector, n)) for n in negatives), default=-math.inf)
    if best_pos > best_neg:
        return best_pos
    return -best_neg


def _mmr(
    hits: list[RecommendHit], details: Mapping[str, _Details], lam: float, count: int
) -> list[RecommendHit]:
    """Maximal marginal relevance order (relevance = score scaled to [0, 1])."""
    scores = np.array([h.score for h in hits])
    low, high = float(scores.min()), float(scores.max())
    relevance = (scores - low) / (high - low) if high > low else np.ones_like(scores)
    vectors = [details[h.node.id].vector for h in hits]
    chosen: list[int] = []
    left = list(range(len(hits)))
    while left and len(chosen) < count:
        best, best_value = left[0], -math.inf
        for i in left:
            penalty = 0.0
            vi = vectors[i]
            if chosen and vi is not None:
                picked = [v for v in (vectors[j] for j in chosen) if v is not None]
                penalty = max((float(np.dot(vi, v)) for v in picked), default=0.0)
            value = lam * float(relevance[i]) - (1 - lam) * penalty
            if value > best_value:
                best, best_value = i, value
        chosen.append(best)
        left.remove(best)
        hits[best].mmr_score = best_value
    return [hits[i] for i in chosen]
