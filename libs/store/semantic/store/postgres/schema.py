"""Schema bootstrap: ordered, checksummed SQL migrations applied under an advisory lock.

Every service calls :func:`bootstrap_schema` at start. It waits for PostgreSQL (retrying
with backoff), creates the database if it is missing and the role may, creates the
``vector`` extension and the ``semantic`` schema, then applies each pending migration
file in its own transaction and records it in ``semantic.schema_migrations`` with its
sha256. A migration whose file changed after it was applied stops start-up. Because
the ledger lives inside the schema, a dropped schema or an empty replacement database
is rebuilt from the files on the next start, and while a service runs: its database
guardian (``semantic.store.postgres.guardian``) checks :func:`schema_gaps` and calls
:func:`bootstrap_schema` again when something is missing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import structlog

from semantic.common.errors import BootstrapError, MigrationChecksumMismatch
from semantic.common.retry import retry_async
from semantic.common.settings import BaseServiceSettings
from semantic.store.postgres.db import transient

log = structlog.get_logger(__name__)

SCHEMA = "semantic"
# pg_advisory_lock key: the first 8 bytes of sha256("semantic.schema"), as a signed int64.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"semantic.schema").digest()[:8], "big", signed=True)
_FILE_NAME = re.compile(r"^(?P<version>\d{3,})_(?P<name>[a-z0-9_]+)\.sql$")

_LEDGER_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_migrations (
    version     integer PRIMARY KEY,
    name        text        NOT NULL,
    checksum    text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
"""


@dataclass(frozen=True)
class Migration:
    """One SQL migration file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """sha256 of the file's text, recorded in the ledger when applied."""
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()

    @property
    def filename(self) -> str:
        """The file name this migration was read from."""
        return f"{self.version:03d}_{self.name}.sql"


def load_migrations(folder: Path | None = None) -> list[Migration]:
    """Read ``NNN_name.sql`` files in version order; the package's own folder by default."""
    source: Iterable[tuple[str, str]]
    if folder is None:
        root = resources.files("semantic.store.postgres") / "migrations"
        source = [(f.name, f.read_text("utf-8")) for f in root.iterdir() if f.is_file()]
    else:
        source = [(p.name, p.read_text("utf-8")) for p in folder.iterdir() if p.is_file()]
    migrations: list[Migration] = []
    for filename, text in source:
        match = _FILE_NAME.match(filename)
        if match is None:
            if filename.endswith(".sql"):
                raise BootstrapError(f"migration file name {filename!r} is not NNN_name.sql")
            continue
        migrations.append(Migration(int(match["version"]), match["name"], text))
    migrations.sort(key=lambda m: m.version)
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise BootstrapError(f"two migration files share a version number: {versions}")
    return migrations


@dataclass(frozen=True)
class BootstrapResult:
    """What one bootstrap run did."""

    applied: list[str]
    already_applied: int
    created_database: bool


async def bootstrap_schema(
    dsn: str,
    *,
    migrations: list[Migration] | None = None,
    timeout_s: float = BaseServiceSettings.model_fields["startup_timeout_seconds"].default,
    create_database: bool = True,
) -> BootstrapResult:
    """Bring the database at ``dsn`` up to the latest migration; safe to run concurrently."""
    todo = load_migrations() if migrations is None else migrations
    created = False

    async def connect() -> asyncpg.Connection:
        nonlocal created
        try:
            return await asyncpg.connect(dsn, timeout=10)
        except asyncpg.InvalidCatalogNameError:
            if not create_database:
                raise BootstrapError(f"database {_db_name(dsn)!r} does not exist") from None
            created = await _create_database(dsn) or created
            return await asyncpg.connect(dsn, timeout=10)

    conn = await retry_async(connect, what="postgresql", timeout_s=timeout_s, transient=transient)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        try:
            applied = await _apply(conn, todo)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    finally:
        await conn.close()
    result = BootstrapResult(
        applied=applied, already_applied=len(todo) - len(applied), created_database=created
    )
    log.info(
        "schema_ready",
        applied=result.applied,
        already_applied=result.already_applied,
        created_database=created,
    )
    return result


async def _apply(conn: asyncpg.Connection, migrations: list[Migration]) -> list[str]:
    await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    await conn.execute(_LEDGER_DDL)
    rows = await conn.fetch(f"SELECT version, name, checksum FROM {SCHEMA}.schema_migrations")
    recorded = {r["version"]: (r["name"], r["checksum"]) for r in rows}
    known = {m.version for m in migrations}
    for version, (name, _) in sorted(recorded.items()):
        if version not in known:
            log.warning("schema_ahead_of_code", version=version, name=name)
    applied: list[str] = []
    for migration in migrations:
        if migration.version in recorded:
            _, checksum = recorded[migration.version]
            if checksum != migration.checksum:
                raise MigrationChecksumMismatch(migration.filename, checksum, migration.checksum)
            continue
        async with conn.transaction():
            try:
                await conn.execute(migration.sql)
            except asyncpg.PostgresError as exc:
                raise BootstrapError(f"migration {migration.filename} failed: {exc}") from exc
            await conn.execute(
                f"INSERT INTO {SCHEMA}.schema_migrations (version, name, checksum)"
                " VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
        log.info("migration_applied", migration=migration.filename)
        applied.append(migration.filename)
    return applied


async def schema_gaps(
    conn: asyncpg.Connection, migrations: list[Migration] | None = None
) -> list[str]:
    """What a bootstrap would have to (re-)create, named; empty when the database is up to
    date: the ``vector`` extension, the ledger, migrations not recorded in it. Cheap (two
    catalog lookups and the ledger), for a periodic check."""
    todo = load_migrations() if migrations is None else migrations
    row = await conn.fetchrow(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector') AS vector,"
        f" to_regclass('{SCHEMA}.schema_migrations') IS NOT NULL AS ledger"
    )
    assert row is not None
    gaps = [] if row["vector"] else ["extension vector"]
    if not row["ledger"]:
        return [*gaps, f"{SCHEMA}.schema_migrations"]
    recorded = {
        r["version"] for r in await conn.fetch(f"SELECT version FROM {SCHEMA}.schema_migrations")
    }
    gaps += [f"migration {m.filename}" for m in todo if m.version not in recorded]
    return gaps


def _db_name(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/") or "postgres"


async def _create_database(dsn: str) -> bool:
    """Create the DSN's database from the maintenance database; False if another won."""
    name = _db_name(dsn)
    admin = urlunsplit(urlsplit(dsn)._replace(path="/postgres"))
    conn = await asyncpg.connect(admin, timeout=10)
    try:
        # The name comes from our own configuration, not from a request; quote it anyway.
        quoted = '"' + name.replace('"', '""') + '"'
        await conn.execute(f"CREATE DATABASE {quoted}")
    except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
        return False
    except asyncpg.InsufficientPrivilegeError as exc:
        raise BootstrapError(
            f"database {name!r} does not exist and this role may not create it"
        ) from exc
    finally:
        await conn.close()
    log.warning("database_created", database=name)
    return True
