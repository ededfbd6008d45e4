"""PostgreSQL access: the pool (with jsonb and vector codecs) and driver-error translation.

Driver errors are classified here and nowhere else (:func:`outage_of`; :func:`transient`
says which are worth retrying at start-up):

    connection  the connection broke or cannot be made (network, restart, a dropped or
                closed database, an admin's terminate, a read-only failover target)
    schema      the schema, a table, the ``vector`` extension or the active space is gone
                (a database emptied, replaced or restored from an older dump)
    codecs      the connection's cached type codecs or statements are stale (the
                ``vector`` extension was re-created with new OIDs)
    busy        PostgreSQL refuses more connections or a call timed out (no recovery:
                just retry later)
    unresponsive  the guardian's probe got no answer to ``SELECT 1`` in time (a hung
                server, a network partition): new work is refused until it answers

All four become :class:`DatabaseOutage` (a ``DependencyUnavailable``: UNAVAILABLE for a
client, an outage for the indexer, never INTERNAL). Every error raised while a
connection is being obtained is an outage. A pool may have a watcher (the database
guardian, see ``recovery``): it is told of every outage but ``busy`` and, while it
recovers the database, refuses new work with ``DatabaseOutage("recovering")``.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import asyncpg
import numpy as np
import structlog
from pgvector.asyncpg import register_vector

from semantic.common.errors import DependencyUnavailable
from semantic.common.retry import is_transient
from semantic.core.settings import RetrievalSettings
from semantic.core.spaces import NoActiveSpace

log = structlog.get_logger(__name__)

Outage = Literal["connection", "schema", "codecs", "busy", "recovering", "unresponsive"]

_CONNECTION_LOST: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.InvalidCatalogNameError,
    asyncpg.ReadOnlySQLTransactionError,
)
_SCHEMA_GONE: tuple[type[BaseException], ...] = (
    asyncpg.UndefinedTableError,
    asyncpg.UndefinedObjectError,
    asyncpg.UndefinedFunctionError,
    asyncpg.UndefinedColumnError,
    asyncpg.InvalidSchemaNameError,
)
_STALE_CODECS: tuple[type[BaseException], ...] = (
    asyncpg.InvalidCachedStatementError,
    asyncpg.exceptions.InternalClientError,  # OutdatedSchemaCacheError, a broken protocol state
)
_REASONS: dict[str, str] = {
    "schema": "the database schema or the vector extension is missing; it is being re-created",
    "codecs": "the database changed under its connections; they are being reset",
    "recovering": "the database is being recovered; retry shortly",
}


class DatabaseOutage(DependencyUnavailable):
    """PostgreSQL cannot serve right now (see the module doc for the kinds)."""

    def __init__(self, kind: Outage, detail: str = "") -> None:
        self.kind = kind
        reason = _REASONS.get(kind, "")
        super().__init__(
            "postgresql", f"{reason} ({detail})" if reason and detail else reason or detail
        )


def transient(exc: BaseException) -> bool:
    """Whether retrying may help: the generic transient errors (``retry.is_transient``) and
    a driver error saying the connection is lost or PostgreSQL is busy or starting up."""
    return is_transient(exc) or outage_of(exc) in ("connection", "busy", "recovering")


def outage_of(exc: BaseException) -> Outage | None:
    """The kind of outage a driver error reveals; None when it says nothing about the
    database's availability (a bug or bad data: those are not retried as outages)."""
    if isinstance(exc, DatabaseOutage):
        return exc.kind
    if isinstance(exc, asyncpg.QueryCanceledError):
        return None  # a statement timeout, not an outage
    if isinstance(exc, asyncpg.TooManyConnectionsError | TimeoutError):
        return "busy"  # slow or full, not lost: retried, nothing to recover
    if isinstance(exc, asyncpg.DeadlockDetectedError | asyncpg.SerializationError):
        return "busy"  # a transaction rolled back by a conflict: done again, it passes
    if isinstance(exc, _CONNECTION_LOST):
        return "connection"
    if isinstance(exc, _SCHEMA_GONE):
        return "schema"
    if isinstance(exc, ValueError) and str(exc).startswith("unknown type:"):
        return "schema"  # asyncpg, registering pgvector's codec without the extension
    if isinstance(exc, _STALE_CODECS):
        return "codecs"
    if isinstance(exc, asyncpg.InternalServerError) and "cache lookup failed" in str(exc):
        return "codecs"  # a statement or codec still names the OID of a dropped type
    return None


class Watcher(Protocol):
    """Who is told about a pool's outages (the database guardian)."""

    def ensure_available(self) -> None:
        """Raise DatabaseOutage while the database is being recovered."""

    def noticed(self, kind: Outage, error: BaseException) -> None:
        """An operation failed with an outage of ``kind`` (called on the event loop)."""


_WATCHERS: dict[int, Watcher] = {}


def watch(pool: asyncpg.Pool, watcher: Watcher) -> None:
    """Tell ``watcher`` about every outage seen through ``pool`` (one watcher per pool)."""
    _WATCHERS[id(pool)] = watcher


def unwatch(pool: asyncpg.Pool, watcher: Watcher) -> None:
    """Stop telling ``watcher``."""
    if _WATCHERS.get(id(pool)) is watcher:
        del _WATCHERS[id(pool)]


MAX_EF_SEARCH = 1000
DEFAULT_MAX_SCAN_TUPLES = 20_000


def default_session_settings() -> dict[str, str]:
    """The read path's session settings at the default ``ef_search`` (``RetrievalSettings``),
    for the pools of processes without that setting (the indexer, maintenance commands)."""
    return session_settings(RetrievalSettings.model_fields["search_ef_search"].default)


def session_settings(ef_search: int) -> dict[str, str]:
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


def utc(value: datetime) -> datetime:
    """A ``timestamptz`` read back as an aware datetime: the driver returns PostgreSQL's
    ``-infinity`` and ``infinity`` (rows stored before the API refused the range's two ends)
    as ``datetime.min`` and ``datetime.max`` without a time zone."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def as_array(value: Any) -> np.ndarray[Any, Any]:
    """A vector column value (pgvector's Vector or a sequence) as a float32 array."""
    if hasattr(value, "to_numpy"):
        value = value.to_numpy()
    return np.asarray(value, dtype=np.float32)


async def init_connection(conn: asyncpg.Connection) -> None:
    """Codecs every connection needs: pgvector's ``vector`` and jsonb as Python objects."""
    try:
        await register_vector(conn)
    except ValueError as exc:
        if outage_of(exc) != "schema":
            raise
        # No `vector` type: the extension is missing (an emptied or replaced database).
        raise DatabaseOutage("schema", str(exc)) from exc
    await conn.set_type_codec(
        "jsonb", encoder=json.dumps, decoder=_jsonb, schema="pg_catalog", format="text"
    )


def _jsonb(text: str) -> Any:
    """A jsonb value as Python; the empty object, what most nodes' metadata and texts hold
    (two per node row), without the decoder."""
    return {} if text == "{}" else json.loads(text)


class PooledConnection(asyncpg.Connection):  # type: ignore[misc]
    """A pool's connection that knows whether its current lease only read.

    Giving a connection back normally resets its session (advisory locks, cursors, LISTEN,
    ``RESET ALL``): one more round trip per lease, as costly to PostgreSQL as a small
    query. A lease that ran only statements and transactions (transaction-scoped settings
    included) leaves nothing to reset, and says so with :meth:`lease_read_only`.
    """

    __slots__ = ("_read_only_lease", "ef_search", "startup_ef_search")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_only_lease = False
        self.startup_ef_search: int | None = None
        """``hnsw.ef_search`` as the pool started the session (its start-up value)."""
        self.ef_search: int | None = None
        """The session's ``hnsw.ef_search`` as far as this process knows (None: unknown):
        a dense search sets another value before its statement rather than after
        (``dense``). A search reads back what it ran with in any case, so a stale record
        costs a round trip, never a wrong answer."""

    def note_ef_search(self, value: int | None, *, start_up: bool = False) -> None:
        """Record the session's ``hnsw.ef_search`` (:attr:`ef_search`; with ``start_up``,
        as its start-up value too). A method: the pool hands out a proxy, through which
        attributes can be read but not set."""
        self.ef_search = value
        if start_up:
            self.startup_ef_search = value

    def lease_read_only(self) -> None:
        """Declare that this lease set no session state: its release skips the reset."""
        self._read_only_lease = True

    def take_read_only(self) -> bool:
        """Whether the lease ending now was declared read-only (and forget it)."""
        read_only, self._read_only_lease = self._read_only_lease, False
        return read_only


async def reset_session(conn: asyncpg.Connection) -> None:
    """The pools' reset on release (asyncpg has already rolled back an open transaction):
    the full session reset, skipped after a lease declared read-only."""
    if isinstance(conn, PooledConnection) and conn.take_read_only():
        return
    query = conn.get_reset_query()
    if query:
        await conn.execute(query)
        note = getattr(conn, "note_ef_search", None)  # isinstance holds for any connection
        if note is not None:  # RESET ALL: back to the start-up value
            note(conn.startup_ef_search)


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    session_settings: Mapping[str, str],
) -> asyncpg.Pool:
    """A pool whose connections have the codecs installed and the read path's settings.

    ``session_settings`` (:func:`session_settings` of the service's ``ef_search``, the HNSW
    settings dense search runs with) travel as start-up parameters, so they cost no round
    trip and survive the ``RESET ALL`` the pool runs when a connection is released. They
    only steer HNSW index scans and plan caching; writers are unaffected.
    """
    settings = dict(session_settings)
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=functools.partial(_init_pooled, ef_search=settings.get("hnsw.ef_search")),
            connection_class=PooledConnection,
            reset=reset_session,
            command_timeout=60,
            server_settings={"application_name": "semantic", **settings},
        )
    except Exception as exc:
        kind = outage_of(exc)
        if kind is None or isinstance(exc, DatabaseOutage):
            raise
        raise DatabaseOutage(kind, _detail(exc)) from exc
    assert pool is not None
    return pool


class translated:  # noqa: N801 - used as a function: ``async with translated(pool):``
    """Turn outages (see the module doc) into DatabaseOutage, telling the pool's watcher,
    and statement timeouts into TimeoutError; every other driver error passes through
    (a bug, hence INTERNAL). A class rather than a generator: it wraps every statement
    of the read path, where a generator's context manager costs several times more."""

    __slots__ = ("_pool",)

    def __init__(self, pool: asyncpg.Pool | None = None) -> None:
        self._pool = pool

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if exc is not None:
            _translate(exc, self._pool)


def _translate(exc: BaseException, pool: asyncpg.Pool | None) -> None:
    """Raise what ``exc`` becomes (:class:`translated`), or return to let it pass."""
    if not isinstance(exc, Exception):
        return  # cancellation and exits pass through
    watcher = _WATCHERS.get(id(pool)) if pool is not None else None
    if isinstance(exc, asyncpg.QueryCanceledError):
        raise TimeoutError("statement timeout") from exc
    if isinstance(exc, NoActiveSpace):
        if watcher is None:
            return
        # A guarded service made sure of a space at start: the database was replaced.
        _tell(watcher, "schema", exc)
        raise DatabaseOutage("schema", str(exc)) from exc
    kind = outage_of(exc)
    if kind is None:
        return
    _tell(watcher, kind, exc)
    if isinstance(exc, DatabaseOutage):
        return
    raise DatabaseOutage(kind, _detail(exc)) from exc


async def acquire(pool: asyncpg.Pool) -> asyncpg.Connection:
    """A connection from ``pool``; any failure to get one is an outage (DatabaseOutage),
    and so is asking while the pool's watcher recovers the database."""
    watcher = _WATCHERS.get(id(pool))
    if watcher is not None:
        watcher.ensure_available()
    try:
        conn: asyncpg.Connection = await pool.acquire()
    except Exception as exc:
        kind = outage_of(exc) or "connection"
        _tell(watcher, kind, exc)
        if isinstance(exc, DatabaseOutage):
            raise
        raise DatabaseOutage(kind, _detail(exc)) from exc
    return conn


def _tell(watcher: Watcher | None, kind: Outage, exc: BaseException) -> None:
    if watcher is not None and kind not in ("busy", "recovering"):
        watcher.noticed(kind, exc)


def _detail(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _init_pooled(conn: asyncpg.Connection, *, ef_search: str | None) -> None:
    """A pool's new connection: the codecs, and the ``ef_search`` it starts with."""
    await init_connection(conn)
    note = getattr(conn, "note_ef_search", None)  # isinstance holds for any connection
    if note is not None and ef_search is not None:
        note(int(ef_search), start_up=True)


@asynccontextmanager
async def connection(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection, with driver errors translated."""
    conn = await acquire(pool)
    try:
        async with translated(pool):
            yield conn
    finally:
        async with translated(pool):
            await pool.release(conn)


class ReadConnections:
    """Pooled connections for the read path: its statements set no session state, so a
    connection goes back to the pool without the session reset's round trip
    (:class:`PooledConnection`)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._releasing: set[asyncio.Future[None]] = set()

    def reading(self) -> _Lease:
        """A pooled connection (``async with reads.reading() as conn``), driver errors
        translated."""
        return _Lease(self)

    async def _give_back(self, conn: asyncpg.Connection) -> None:
        read_only = getattr(conn, "lease_read_only", None)  # a PooledConnection's
        if read_only is None or conn.is_in_transaction():
            self._release_later(conn)
            return
        read_only()
        try:
            await self._pool.release(conn)  # nothing to send: it completes without waiting
        except Exception as exc:  # the answer is read already; the pool replaces the connection
            log.warning("connection_release_failed", error=repr(exc))

    def _release_later(self, conn: asyncpg.Connection) -> None:
        """Release in the background: this one may wait for a round trip (a rollback after
        a cancelled query or transaction, or a session reset), and no reply waits for it."""
        release = asyncio.ensure_future(self._pool.release(conn))
        self._releasing.add(release)
        release.add_done_callback(self._released)

    def _released(self, release: asyncio.Future[None]) -> None:
        self._releasing.discard(release)
        if not release.cancelled() and release.exception() is not None:
            # asyncpg closed the connection; the pool opens a new one when needed.
            log.warning("connection_release_failed", error=repr(release.exception()))


class _Lease:
    """One lease of :meth:`ReadConnections.reading` (a class, as :class:`translated`)."""

    __slots__ = ("_conn", "_reads")

    def __init__(self, reads: ReadConnections) -> None:
        self._reads = reads
        self._conn: asyncpg.Connection | None = None

    async def __aenter__(self) -> asyncpg.Connection:
        self._conn = await acquire(self._reads._pool)
        return self._conn

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        conn, self._conn = self._conn, None
        assert conn is not None
        reads = self._reads
        if exc is not None:
            reads._release_later(conn)
            _translate(exc, reads._pool)
            return
        await reads._give_back(conn)
