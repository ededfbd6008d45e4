"""The core's ``Retrieval`` over a pool: dense (``dense``) and keyword (``keyword``) candidates,
the query's filter compiled to SQL (``filters``), and the hits' mean vectors a query expansion
needs (``mean_vector``), on read-path connections given back in the background
(``db.ReadConnections``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import numpy as np

from semantic.core.degraded import LocalCandidates
from semantic.core.domain import DEFAULT_VECTOR, DenseHit, SearchQuery, VectorTarget
from semantic.core.settings import RetrievalSettings, WritePathSettings
from semantic.core.spaces import Space
from semantic.store.postgres import dense, keyword, local_first, spaces
from semantic.store.postgres.db import ReadConnections
from semantic.store.postgres.filters import compile_filter
from semantic.store.postgres.mean_vector import named_mean_vectors
from semantic.store.postgres.table_sizes import TableSizes, grown_ef_search


@dataclass(frozen=True)
class RetrievalConfig:
    """Tuning of the read path (``from_settings``: the values come from the settings)."""

    text_config: str
    bm25_k1: float
    bm25_b: float
    ef_search: int
    exact_threshold: int
    ef_search_growth: float = 0.0
    local_first_max_changes: int = 1000

    @classmethod
    def from_settings(
        cls, retrieval: RetrievalSettings, write_path: WritePathSettings
    ) -> RetrievalConfig:
        """The read path's tuning, the keyword index read as the write path builds it."""
        return cls(
            text_config=write_path.search_text_config,
            bm25_k1=retrieval.search_bm25_k1,
            bm25_b=retrieval.search_bm25_b,
            ef_search=retrieval.search_ef_search,
            exact_threshold=retrieval.search_exact_threshold,
            ef_search_growth=retrieval.search_ef_search_growth,
            local_first_max_changes=retrieval.search_local_first_max_changes,
        )


class PostgresRetrieval:
    """Dense and keyword search in PostgreSQL + pgvector."""

    def __init__(self, pool: asyncpg.Pool, config: RetrievalConfig) -> None:
        self._reads = ReadConnections(pool)
        self._config = config
        self._sizes = TableSizes()

    async def dense(
        self,
        space: Space,
        query: SearchQuery,
        vector: np.ndarray[Any, Any],
        limit: int,
        *,
        attach_after: int | None = None,
    ) -> list[DenseHit]:
        """The ``limit`` nodes most similar to ``vector`` under the query's filter."""
        sql, params = compile_filter(query.tenant, query.filter, start=1)
        async with self._reads.reading() as conn:
            rows = await self._sizes.rows(conn, space.table)
            ef = grown_ef_search(self._config.ef_search, rows, self._config.ef_search_growth)
            return await dense.dense_search(
                conn,
                space.table,
                query.tenant,
                vector,
                targets=query.targets or (VectorTarget(DEFAULT_VECTOR),),
                filter_sql=sql,
                filter_params=params,
                limit=limit,
                ef_search=max(ef, limit),
                exact_threshold=self._config.exact_threshold,
                filtered=not query.filter.is_empty,
                attach_after=attach_after,
                halfvec_dim=spaces.halfvec_dim(space.index_precision, space.dim),
            )

    async def dense_candidates(
        self,
        space: Space,
        query: SearchQuery,
        vector: np.ndarray[Any, Any],
        limit: int,
        candidates: LocalCandidates,
        *,
        attach_after: int | None = None,
    ) -> list[DenseHit] | None:
        """The ``limit`` best of a local index's candidates and the nodes changed since its
        cursor, scored exactly under the query's filter (``local_first.candidate_search``); None
        when the change log cannot vouch for the candidates."""
        sql, params = compile_filter(query.tenant, query.filter, start=1)
        target = (query.targets or (VectorTarget(DEFAULT_VECTOR),))[0]
        async with self._reads.reading() as conn:
            return await local_first.candidate_search(
                conn,
                space.table,
                space.id,
                query.tenant,
                vector,
                name=target.name,
                filter_sql=sql,
                filter_params=params,
                candidates=candidates,
                max_changed=self._config.local_first_max_changes,
                limit=limit,
                attach_after=attach_after,
            )

    async def keyword(self, query: SearchQuery, limit: int) -> list[tuple[str, float]]:
        """The ``limit`` best ``(node_id, bm25)`` for the query text under its filter."""
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

    async def mean_vectors(
        self, space: Space, tenant: str, ids: Sequence[str], names: Sequence[str]
    ) -> dict[str, dict[str, np.ndarray[Any, Any]]]:
        """node id -> name -> the node's mean chunk vector of that name in the space."""
        async with self._reads.reading() as conn:
            return await named_mean_vectors(conn, space.id, tenant, ids, names)
