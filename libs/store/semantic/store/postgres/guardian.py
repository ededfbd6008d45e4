"""The database guardian: a service notices that its database was lost, emptied,
replaced or restored, and comes back by itself, without a restart.

    an outage reported by ``db`` (a failed query)     -> not serving (``report``); new work is
    or found by the periodic check (schema gaps,         refused with UNAVAILABLE
    no active space, this service's vector table gone)
            |
    one recovery task, retried with backoff until it succeeds:
        bootstrap the schema (migrations under the advisory lock, as at start)
        -> reset the pool's connections (new ones register pgvector's codec with the
           new OIDs) -> ensure this service's embedding space and its vector table
           (as at start) -> verify (no gaps, a vector round trip)
            |
    recovered                                          -> serving again; hooks run (the
                                                          indexer's heal trigger, the
                                                          active-space resolver)

Every step is a structured log event: ``database_lost``, ``dependency_retry``
(dependency ``postgresql_recovery``), ``database_recovered``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable

import asyncpg
import structlog
from prometheus_client import Counter, Gauge
from pydantic import Field

from semantic.common.retry import retry_async
from semantic.common.settings import BaseServiceSettings
from semantic.core.ports import ModelDescription
from semantic.core.spaces import (
    DEFAULT_INDEX_PRECISION,
    IndexPrecision,
    NoActiveSpace,
    Space,
    vector_table,
)
from semantic.store.postgres import db, spaces
from semantic.store.postgres.schema import bootstrap_schema, load_migrations, schema_gaps

log = structlog.get_logger(__name__)

AVAILABLE = Gauge(
    "semantic_database_available", "1 while the database serves, 0 while it is recovered"
)
OUTAGES = Counter("semantic_database_outages_total", "Database outages noticed, by kind", ["kind"])
RECOVERIES = Counter("semantic_database_recoveries_total", "Database recoveries completed")

Report = Callable[[bool], Awaitable[None]]
"""Publishes whether the service serves (a transport's health, e.g.
``semantic.common.health.health_reporter``)."""


class DatabaseRecoverySettings(BaseServiceSettings):
    """How a running service notices a lost, emptied or replaced database and recovers it
    (:class:`DatabaseGuardian`); shared by search and the indexer."""

    database_check_interval_s: float = Field(
        10.0,
        ge=0,
        description="Seconds between checks that the schema, the vector extension and the "
        "active space are there (0: only a failed query starts a recovery).",
    )
    database_recovery_max_backoff_s: float = Field(
        10.0, gt=0, description="Longest wait between two attempts to recover the database."
    )
    database_probe_timeout_s: float = Field(
        5.0,
        ge=0,
        description="A database that does not answer `SELECT 1` on the probe's own connection "
        "within this many seconds is unresponsive (a hung server, a network partition): new "
        "work is refused (reads go to the local index) until it answers again (0: no probe).",
    )
    database_probe_interval_s: float = Field(
        2.0, gt=0, description="Seconds between two probes of the database (see above)."
    )


class DatabaseGuardian:
    """Watches one pool (see module doc); one recovery runs at a time."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        dsn: str,
        model: ModelDescription,
        *,
        report: Report,
        service: str,
        check_interval_s: float,
        max_backoff_s: float,
        attempt_timeout_s: float = 10.0,
        index_precision: IndexPrecision = DEFAULT_INDEX_PRECISION,
        probe_timeout_s: float = 0.0,
        probe_interval_s: float = 2.0,
    ) -> None:
        self._pool = pool
        self._index_precision = index_precision
        self._dsn = dsn
        self._model = model
        self._report = report
        self._service = service
        self._check_interval_s = check_interval_s
        self._max_backoff_s = max_backoff_s
        self._attempt_timeout_s = attempt_timeout_s
        self._migrations = load_migrations()
        self._available = asyncio.Event()
        self._available.set()
        self._health_lock = asyncio.Lock()
        self._hooks: list[Callable[[], None]] = []
        self._recovery: asyncio.Task[None] | None = None
        self._checker: asyncio.Task[None] | None = None
        self._probe_timeout_s = probe_timeout_s
        self._probe_interval_s = probe_interval_s
        self._prober: asyncio.Task[None] | None = None
        self._space_id: int | None = None
        self._closed = False

    @classmethod
    def from_settings(
        cls,
        pool: asyncpg.Pool,
        settings: DatabaseRecoverySettings,
        model: ModelDescription,
        report: Report,
        service: str,
        *,
        index_precision: IndexPrecision = DEFAULT_INDEX_PRECISION,
    ) -> DatabaseGuardian:
        """The guardian of ``service``'s pool, publishing availability through ``report``;
        a space it has to create again gets ``index_precision``."""
        return cls(
            pool,
            settings.dsn(),
            model,
            report=report,
            service=service,
            check_interval_s=settings.database_check_interval_s,
            max_backoff_s=settings.database_recovery_max_backoff_s,
            index_precision=index_precision,
            probe_timeout_s=settings.database_probe_timeout_s,
            probe_interval_s=settings.database_probe_interval_s,
        )

    @property
    def available(self) -> bool:
        """Whether the database serves (False from an outage until its recovery)."""
        return self._available.is_set()

    async def wait_available(self) -> None:
        """Return once the database serves."""
        await self._available.wait()

    def on_recovered(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` after every recovery."""
        self._hooks.append(hook)

    def start(self, space: Space) -> None:
        """Start watching (``space``: the one start-up ensured for this service's model)."""
        self._space_id = space.id
        AVAILABLE.set(1)
        db.watch(self._pool, self)
        if self._check_interval_s > 0:
            self._checker = asyncio.create_task(self._check_loop(), name="database-check")
        if self._probe_timeout_s > 0:
            self._prober = asyncio.create_task(self._probe_loop(), name="database-probe")

    async def close(self) -> None:
        """Stop watching and cancel a recovery in progress."""
        self._closed = True
        db.unwatch(self._pool, self)
        tasks = [t for t in (self._checker, self._prober, self._recovery) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- db.Watcher ---------------------------------------------------------------------

    def ensure_available(self) -> None:
        """Refuse new work while the database is being recovered."""
        if not self._available.is_set():
            raise db.DatabaseOutage("recovering")

    def noticed(self, kind: db.Outage, error: BaseException) -> None:
        """An outage: stop serving and start the recovery (unless one runs already)."""
        if self._closed or self._recovery is not None:
            return
        self._available.clear()
        AVAILABLE.set(0)
        OUTAGES.labels(kind).inc()
        log.warning(
            "database_lost",
            service=self._service,
            kind=kind,
            error=f"{type(error).__name__}: {error}",
        )
        self._recovery = asyncio.create_task(self._recover(kind), name="database-recovery")

    # --- recovery -----------------------------------------------------------------------

    async def _recover(self, kind: str) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        attempts = 0
        await self._publish_health()

        async def attempt() -> None:
            nonlocal attempts
            attempts += 1
            await self._restore()

        try:
            await retry_async(
                attempt,
                what="postgresql_recovery",
                timeout_s=math.inf,
                transient=lambda exc: isinstance(exc, Exception),
                initial_s=0.2,
                max_wait_s=self._max_backoff_s,
            )
        finally:
            self._recovery = None
        self._available.set()
        AVAILABLE.set(1)
        RECOVERIES.inc()
        log.info(
            "database_recovered",
            service=self._service,
            kind=kind,
            attempts=attempts,
            space=self._space_id,
            duration_s=round(loop.time() - started, 3),
        )
        await self._publish_health()
        for hook in self._hooks:
            hook()

    async def _restore(self) -> None:
        """One attempt: schema, fresh connections, this service's space, a check."""
        await bootstrap_schema(
            self._dsn, migrations=self._migrations, timeout_s=self._attempt_timeout_s
        )
        await self._pool.expire_connections()
        # Straight from the pool: db.acquire refuses work while the recovery runs.
        conn = await self._pool.acquire()
        try:
            space = await spaces.ensure_space(
                conn,
                model_id=self._model.model_id,
                model_sha256=self._model.sha256,
                dim=self._model.dim,
                index_precision=self._index_precision,
            )
            self._space_id = space.id
            gaps = await self._gaps(conn)
            if gaps:
                raise db.DatabaseOutage("schema", "still missing: " + ", ".join(gaps))
            # A vector through the binary codec: this connection knows the current OIDs.
            await conn.fetchval("SELECT $1::vector", [0.0])
        finally:
            await self._pool.release(conn)

    async def _gaps(self, conn: asyncpg.Connection) -> list[str]:
        """What the database lacks that this service needs, named; empty when whole."""
        gaps = await schema_gaps(conn, self._migrations)
        if gaps:
            return gaps
        try:
            await spaces.active_space(conn)
        except NoActiveSpace:
            gaps.append("the active space")
        if self._space_id is not None:
            table = vector_table(self._space_id)
            if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
                gaps.append(table)
            elif await spaces.vectors_lost(conn, self._space_id):
                gaps.append(f"{table}.embedding")
        return gaps

    async def _publish_health(self) -> None:
        """Report the current state; serialised, so the last report is the last state."""
        async with self._health_lock:
            await self._report(self.available)

    # --- periodic check -----------------------------------------------------------------

    async def _check_loop(self) -> None:
        """Find a database emptied or replaced while no query failed (e.g. no traffic)."""
        while True:
            await asyncio.sleep(self._check_interval_s)
            if not self.available:
                continue
            try:
                async with db.connection(self._pool) as conn:
                    gaps = await self._gaps(conn)
            except db.DatabaseOutage:
                continue  # the watcher (this object) was told already
            except Exception as exc:  # logged, never fatal: the next check tries again
                log.warning("database_check_failed", error=f"{type(exc).__name__}: {exc}")
                continue
            if gaps:
                self.noticed("schema", db.DatabaseOutage("schema", "missing: " + ", ".join(gaps)))

    # --- probe --------------------------------------------------------------------------

    async def _probe_loop(self) -> None:
        """Notice a database that stopped answering (a hung server, a network partition):
        a failed query notices the others, but a hung one only fails at the command timeout
        (60 s), and every request meanwhile would wait as long. The probe has a connection
        of its own, so a pool busy with slow queries does not look unresponsive."""
        conn: asyncpg.Connection | None = None
        try:
            while True:
                await asyncio.sleep(self._probe_interval_s)
                if not self.available:
                    _drop(conn)  # the recovery decides when it answers again
                    conn = None
                    continue
                try:
                    async with asyncio.timeout(self._probe_timeout_s):
                        if conn is None or conn.is_closed():
                            conn = await asyncpg.connect(
                                self._dsn, server_settings={"application_name": "semantic-probe"}
                            )
                        await conn.fetchval("SELECT 1")
                except TimeoutError:
                    _drop(conn)
                    conn = None
                    self.noticed(
                        "unresponsive",
                        TimeoutError(f"no answer to SELECT 1 within {self._probe_timeout_s:g} s"),
                    )
                except Exception as exc:  # refused, reset: a query or the check notices those
                    _drop(conn)
                    conn = None
                    log.debug("database_probe_failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            _drop(conn)


def _drop(conn: asyncpg.Connection | None) -> None:
    """Close ``conn`` at once, without a round trip (it may hang on a hung server)."""
    if conn is not None:
        conn.terminate()
