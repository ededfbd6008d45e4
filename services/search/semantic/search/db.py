"""PostgreSQL access: the pool (with jsonb and vector codecs) and driver-error translation."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import numpy as np
import structlog
from pgvector.asyncpg import register_vector

from semantic.common.errors import DependencyUnavailable

log = structlog.get_logger(__name__)

_UNAVAILABLE = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
)


DEFAULT_EF_SEARCH = 150
"""HNSW candidates per query. At 100k embedding-like vectors (``semantic bench search``)
recall@10 was 0.9745-0.994 at 100 depending on the index build, 0.9895-0.999 at 150."""
MAX_EF_SEARCH = 1000
DEFAULT_MAX_SCAN_TUPLES = 20_000


def session_settings(ef_search: int = DEFAULT_EF_SEARCH) -> dict[str, str]:
    """The settings dense search runs with (see ``dense``), as connection start-up parameters:
    HNSW iterative scans in relaxed order, ``ef_search``, the iterative scan's tuple budget,
    and custom plans only (the filter's selectivity decides the plan, never a generic plan of
    a cached statement)."""
    return {
        "hnsw.iterative_scan": "relaxed_order",
        "hnsw.ef_search": str(max(1, min(int(ef_search), MAX_EF_SEARCH))),
        "hnsw.max_scan_tuples": str(DEFAULT_MAX_SCAN_TUPLES),
        "plan_cache_mode": "force_custom_plan",
    }


SESSION_SETTINGS = session_settings()


def as_array(value: Any) -> np.ndarray[Any, Any]:
    """A vector column value (pgvector's Vector or a sequence) as a float32 array."""
    if hasattr(value, "to_numpy"):
        value = value.to_numpy()
    return np.asarray(value, dtype=np.float32)


async def init_connection(conn: asyncpg.Connection) -> None:
    """Codecs every connection needs: pgvector's ``vector`` and jsonb as Python objects."""
    await register_vector(conn)
    await conn.set_type_codec(
        "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog", format="text"
    )


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    session_settings: Mapping[str, str] | None = None,
) -> asyncpg.Pool:
    """A pool whose connections have the codecs installed and the read path's settings.

    ``session_settings`` (default: :data:`SESSION_SETTINGS`, the HNSW settings dense search
    runs with) travel as start-up parameters, so they cost no round trip and survive the
    ``RESET ALL`` the pool runs when a connection is released. They only steer HNSW index
    scans and plan caching; writers are unaffected.
    """
    settings = dict(SESSION_SETTINGS if session_settings is None else session_settings)
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=init_connection,
            command_timeout=60,
            server_settings={"application_name": "semantic", **settings},
        )
    except _UNAVAILABLE as exc:
        raise DependencyUnavailable("postgresql", str(exc) or type(exc).__name__) from exc
    assert pool is not None
    return pool


@asynccontextmanager
async def translated() -> AsyncIterator[None]:
    """Turn "the database is unreachable" into DependencyUnavailable, timeouts into
    TimeoutError; every other driver error passes through (a bug, hence INTERNAL)."""
    try:
        yield
    except asyncpg.QueryCanceledError as exc:
        raise TimeoutError("statement timeout") from exc
    except _UNAVAILABLE as exc:
        raise DependencyUnavailable("postgresql", str(exc) or type(exc).__name__) from exc


@asynccontextmanager
async def connection(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection, with driver errors translated."""
    async with translated(), pool.acquire() as conn:
        yield conn


class ReadConnections:
    """Pooled connections for the read path, given back in the background.

    Giving a connection back costs a round trip (asyncpg resets its session state); here
    that happens after the caller is done, so a reply does not wait for it.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._releasing: set[asyncio.Future[None]] = set()

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection, driver errors translated."""
        async with translated():
            conn = await self._pool.acquire()
        try:
            async with translated():
                yield conn
        finally:
            release = asyncio.ensure_future(self._pool.release(conn))
            self._releasing.add(release)
            release.add_done_callback(self._released)

    def _released(self, release: asyncio.Future[None]) -> None:
        self._releasing.discard(release)
        if not release.cancelled() and release.exception() is not None:
            # asyncpg closed the connection; the pool opens a new one when needed.
            log.warning("connection_release_failed", error=repr(release.exception()))
