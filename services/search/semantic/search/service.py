"""The search service's core: each RPC as a method over domain values.

Servicers convert protobuf and call these; SQL lives in the repositories and the
retrieval modules (dense, keyword, filters); ranking glue (fusion) is pure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import numpy as np
import structlog

from semantic.common.errors import InvalidArgument, NotFound
from semantic.search import dense, fusion, keyword, spaces
from semantic.search.db import ReadConnections, as_array, connection
from semantic.search.domain import (
    DEFAULT_VECTOR,
    Filter,
    Hit,
    Mode,
    NodeRecord,
    SearchQuery,
    VectorTarget,
)
from semantic.search.filters import compile_filter, validate_filter
from semantic.search.node_store import NodeRepository
from semantic.search.nodes import DeleteOutcome, VectorRow, WriteResult
from semantic.search.writer import ContentWriter, Embedder

log = structlog.get_logger(__name__)

Key = tuple[str, str]
# A switch of the active space reaches every replica within this many seconds; both
# spaces stay complete during a switch, so a reader on the old one still gets answers.
ACTIVE_SPACE_TTL_S = 1.0


@dataclass(frozen=True)
class RetrievalConfig:
    """Tuning of the read path (the values come from settings)."""

    text_config: str
    bm25_k1: float
    bm25_b: float
    ef_search: int
    exact_threshold: int


@dataclass
class SearchResult:
    """Hits (nodes attached) plus what the query cost."""

    hits: list[Hit]
    space: spaces.Space
    mode: Mode
    query_tokens: int = 0
    query_truncated: bool = False


@dataclass
class Stats:
    """Counts for Stats."""

    nodes_by_type: dict[str, int]
    active: spaces.Space | None
    spaces: list[spaces.Space]
    vectors: dict[int, int]
    relations: list[tuple[str, str, int]]
    missing: int = 0
    stale: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class SearchService:
    """Upsert, delete, get, search, nearest and stats over one database."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        repository: NodeRepository,
        writer: ContentWriter,
        embedder: Embedder,
        config: RetrievalConfig,
    ) -> None:
        self._pool = pool
        self._repository = repository
        self._writer = writer
        self._embedder = embedder
        self._config = config
        self._active: tuple[spaces.Space, float] | None = None
        self._reads = ReadConnections(pool)

    async def space(self, space_id: int | None = None) -> spaces.Space:
        """The active space (re-read at most every ACTIVE_SPACE_TTL_S), or the one asked for."""
        now = time.monotonic()
        if space_id is None and self._active and now - self._active[1] < ACTIVE_SPACE_TTL_S:
            return self._active[0]
        async with connection(self._pool) as conn:
            if space_id is not None:
                return await spaces.get_space(conn, space_id)
            active = await spaces.active_space(conn)
        self._active = (active, now)
        return active

    async def upsert(
        self,
        nodes: Sequence[NodeRecord],
        client_vectors: Mapping[Key, Sequence[VectorRow]],
        space_id: int | None = None,
    ) -> list[WriteResult]:
        """Store nodes and their vectors (embedding what changed)."""
        return await self._writer.upsert(await self.space(space_id), nodes, client_vectors)

    async def delete(
        self, tenant: str, ids: Sequence[str], slugs: Sequence[str], version: int
    ) -> list[tuple[str, str | None, DeleteOutcome]]:
        """Delete by id and slug (unknown slugs are reported as not found)."""
        async with connection(self._pool) as conn:
            by_slug = {n.slug: n.id for n in await self._repository.get(conn, tenant, slugs=slugs)}
            targets = list(dict.fromkeys([*ids, *(by_slug[s] for s in slugs if s in by_slug)]))
            results = await self._repository.delete(
                conn, await spaces.list_spaces(conn), tenant, targets, version
            )
        missing = [(s, s, DeleteOutcome.NOT_FOUND) for s in slugs if s not in by_slug]
        return results + [("", slug, outcome) for _, slug, outcome in missing]

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
        async with connection(self._pool) as conn:
            rows = await self._repository.get(conn, tenant, ids=ids, slugs=slugs)
            by_id = {n.id: n for n in rows}
            by_slug = {n.slug: n for n in rows if n.slug is not None}
            nodes = [by_id[i] for i in ids if i in by_id]
            nodes += [by_slug[s] for s in slugs if s in by_slug]
            vectors: dict[str, list[VectorRow]] = {}
            if with_vectors and nodes:
                space = (
                    await spaces.active_space(conn)
                    if space_id is None
                    else await spaces.get_space(conn, space_id)
                )
                vectors = await self._repository.vectors(conn, space, tenant, [n.id for n in nodes])
        return nodes, vectors

    async def search(self, query: SearchQuery, space_id: int | None = None) -> SearchResult:
        """Dense, keyword or hybrid search with filters, min_score and pagination."""
        validate_filter(query.filter)
        space = await self.space(space_id)
        wanted = query.offset + query.top_k
        result = SearchResult([], space, query.mode)
        vector = query.vector
        if vector is not None and vector.size != space.dim:
            raise InvalidArgument(
                "vector", f"has {vector.size} dimensions, space {space.id} holds {space.dim}"
            )
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
            dense_hits = await self._dense(space, query, vector, wanted, attach_after=query.offset)
            hits = fusion.from_dense(dense_hits)
        elif query.mode is Mode.KEYWORD:
            if not query.text:
                raise InvalidArgument("text", "keyword search needs query text")
            hits = fusion.from_keyword(await self._keyword(query, wanted))
        else:
            assert vector is not None
            assert query.text is not None
            assert query.hybrid is not None
            pool = max(wanted, query.hybrid.candidates)
            dense_hits, keyword_hits = await asyncio.gather(
                self._dense(space, query, vector, pool), self._keyword(query, pool)
            )
            hits = fusion.fuse(
                dense_hits,
                keyword_hits,
                rrf_k=query.hybrid.rrf_k,
                dense_weight=query.hybrid.dense_weight,
                keyword_weight=query.hybrid.keyword_weight,
            )
        result.hits = fusion.page(fusion.above(hits, query.min_score), query.offset, query.top_k)
        await self._attach(query.tenant, result.hits)
        return result

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
    ) -> tuple[str, SearchResult]:
        """The nodes closest to a node (by its first chunk's vector), excluding itself."""
        validate_filter(flt)
        space = await self.space(space_id)
        async with connection(self._pool) as conn:
            nodes = await self._repository.get(
                conn, tenant, ids=[node_id] if node_id else [], slugs=[slug] if slug else []
            )
            if not nodes:
                raise NotFound("node", f"slug={slug}" if slug else f"id={node_id}")
            source = nodes[0]
            rows = await conn.fetch(
                f"SELECT embedding FROM {space.table} WHERE tenant = $1 AND node_id = $2"
                " AND name = $3 ORDER BY chunk",
                tenant,
                source.id,
                vector_name,
            )
        if not rows:
            raise NotFound("vector", f"{vector_name!r} of node {source.id!r} in space {space.id}")
        centre = np.mean(np.stack([as_array(r["embedding"]) for r in rows]), axis=0)
        flt = Filter(**{**flt.__dict__, "exclude_ids": (*flt.exclude_ids, source.id)})
        query = SearchQuery(
            tenant=tenant,
            mode=Mode.DENSE,
            vector=centre,
            targets=(VectorTarget(vector_name),),
            filter=flt,
            top_k=top_k,
            min_score=min_score,
        )
        hits = fusion.from_dense(await self._dense(space, query, centre, top_k, attach_after=0))
        result = SearchResult(fusion.above(hits, min_score)[:top_k], space, Mode.DENSE)
        await self._attach(tenant, result.hits)
        return source.id, result

    async def _dense(
        self,
        space: spaces.Space,
        query: SearchQuery,
        vector: np.ndarray[Any, Any],
        limit: int,
        *,
        attach_after: int | None = None,
    ) -> list[dense.DenseHit]:
        sql, params = compile_filter(query.tenant, query.filter, start=1)
        async with self._reads.reading() as conn:
            return await dense.dense_search(
                conn,
                space.table,
                query.tenant,
                vector,
                targets=query.targets or (VectorTarget(DEFAULT_VECTOR),),
                filter_sql=sql,
                filter_params=params,
                limit=limit,
                ef_search=max(self._config.ef_search, limit),
                exact_threshold=self._config.exact_threshold,
                filtered=not query.filter.is_empty,
                attach_after=attach_after,
            )

    async def _keyword(self, query: SearchQuery, limit: int) -> list[tuple[str, float]]:
        sql, params = compile_filter(query.tenant, query.filter, start=1)
        async with self._reads.reading() as conn:
            return await keyword.keyword_search(
                conn,
                query.tenant,
                query.text or "",
                filter_sql=sql,
                filter_params=params,
                limit=limit,
                text_config=self._config.text_config,
                k1=self._config.bm25_k1,
                b=self._config.bm25_b,
            )

    async def _attach(self, tenant: str, hits: list[Hit]) -> None:
        """Read the nodes of the hits that do not carry theirs yet (one query, or none)."""
        missing = [h.node_id for h in hits if h.node is None]
        if missing:
            async with self._reads.reading() as conn:
                nodes = await self._repository.get(conn, tenant, ids=missing)
            by_id = {n.id: n for n in nodes}
            for hit in hits:
                if hit.node is None:
                    hit.node = by_id.get(hit.node_id)
        hits[:] = [h for h in hits if h.node is not None]  # deleted between the two reads

    async def stats(self, tenant: str | None) -> Stats:
        """Nodes per type, spaces and their sizes, heal backlog of the active space."""
        async with connection(self._pool) as conn:
            where, args = ("WHERE tenant = $1", [tenant]) if tenant is not None else ("", [])
            by_type = {
                r["content_type"]: r["n"]
                for r in await conn.fetch(
                    f"SELECT content_type, count(*) AS n FROM semantic.nodes {where}"
                    " GROUP BY content_type ORDER BY content_type",
                    *args,
                )
            }
            all_spaces = await spaces.list_spaces(conn)
            active = next((s for s in all_spaces if s.state == "active"), None)
            vectors = {
                s.id: int(await conn.fetchval(f"SELECT count(*) FROM {s.table}"))
                for s in all_spaces
            }
            relations = [
                (r["name"], r["kind"], int(r["bytes"]))
                for r in await conn.fetch(
                    "SELECT c.relname AS name,"
                    " CASE c.relkind WHEN 'i' THEN 'index' ELSE 'table' END AS kind,"
                    " pg_total_relation_size(c.oid) AS bytes FROM pg_class c"
                    " JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = 'semantic' AND c.relkind IN ('r', 'i')"
                    " ORDER BY bytes DESC"
                )
            ]
            missing = stale = 0
            if active is not None:
                row = await conn.fetchrow(
                    "SELECT count(*) FILTER (WHERE v.node_id IS NULL AND (n.title <> ''"
                    " OR n.body <> '' OR n.texts <> '{}'::jsonb)) AS missing,"
                    " count(*) FILTER (WHERE v.node_id IS NOT NULL AND v.hash <> n.content_hash)"
                    f" AS stale FROM semantic.nodes n LEFT JOIN LATERAL (SELECT node_id,"
                    f" content_hash AS hash FROM {active.table} t WHERE t.tenant = n.tenant"
                    " AND t.node_id = n.id AND NOT t.client_supplied LIMIT 1) v ON true"
                    f" {where.replace('tenant', 'n.tenant')}",
                    *args,
                )
                if row is not None:
                    missing, stale = int(row["missing"]), int(row["stale"])
        return Stats(by_type, active, all_spaces, vectors, relations, missing, stale)
