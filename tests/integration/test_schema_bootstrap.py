"""Schema bootstrap against a real PostgreSQL: concurrent, self-healing, strict, patient."""

import asyncio
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from semantic.common.errors import MigrationChecksumMismatch
from semantic.store.postgres.schema import bootstrap_schema, load_migrations
from semantic.tools.devstack.ports import free_port
from semantic.tools.devstack.postgres import EmbeddedPostgres


def _write_migrations(folder: Path) -> list[Path]:
    """Two migrations whose second one is NOT idempotent: applying it twice would fail."""
    folder.mkdir(exist_ok=True)
    first = folder / "001_widgets.sql"
    first.write_text(
        "CREATE TABLE semantic.widgets (id int PRIMARY KEY, embedding vector(3));\n"
        "CREATE TABLE semantic.apply_log (name text NOT NULL);\n"
        "INSERT INTO semantic.apply_log VALUES ('001');\n"
    )
    second = folder / "002_seed.sql"
    second.write_text(
        "INSERT INTO semantic.widgets VALUES (1, '[1,2,3]');\n"
        "INSERT INTO semantic.apply_log VALUES ('002');\n"
    )
    return [first, second]


async def _fetchval(dsn: str, sql: str) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def test_four_concurrent_bootstraps_apply_each_migration_exactly_once(
    database_url: str, tmp_path: Path
) -> None:
    _write_migrations(tmp_path)
    test_set = load_migrations(tmp_path)
    results = await asyncio.gather(
        *(bootstrap_schema(database_url, migrations=test_set) for _ in range(4))
    )
    applied = [name for r in results for name in r.applied]
    assert sorted(applied) == ["001_widgets.sql", "002_seed.sql"]
    assert sum(r.already_applied for r in results) == 3 * len(test_set)
    assert await _fetchval(database_url, "SELECT count(*) FROM semantic.apply_log") == 2
    assert await _fetchval(database_url, "SELECT count(*) FROM semantic.schema_migrations") == 2


async def test_shipped_migrations_apply_and_a_rerun_is_a_no_op(database_url: str) -> None:
    first = await bootstrap_schema(database_url)
    second = await bootstrap_schema(database_url)
    assert first.applied == [m.filename for m in load_migrations()]
    assert second.applied == []
    assert second.already_applied == len(load_migrations())
    assert (
        await _fetchval(database_url, "SELECT count(*) FROM pg_extension WHERE extname = 'vector'")
        == 1
    )
    assert await _fetchval(database_url, "SELECT count(*) FROM semantic.meta") == 1


async def test_dropped_schema_is_rebuilt_on_next_start(database_url: str, tmp_path: Path) -> None:
    _write_migrations(tmp_path)
    migrations = load_migrations(tmp_path)
    await bootstrap_schema(database_url, migrations=migrations)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("DROP SCHEMA semantic CASCADE")
    finally:
        await conn.close()
    result = await bootstrap_schema(database_url, migrations=migrations)
    assert result.applied == ["001_widgets.sql", "002_seed.sql"]
    assert await _fetchval(database_url, "SELECT count(*) FROM semantic.widgets") == 1


async def test_missing_database_is_created_and_filled(database_url: str) -> None:
    parts = urlsplit(database_url)
    fresh = urlunsplit(parts._replace(path=parts.path + "_new"))
    try:
        result = await bootstrap_schema(fresh)
        assert result.created_database
        assert result.applied == [m.filename for m in load_migrations()]
        assert await _fetchval(fresh, "SELECT count(*) FROM semantic.schema_migrations") >= 1
    finally:
        admin = urlunsplit(parts._replace(path="/postgres"))
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{parts.path[1:]}_new" WITH (FORCE)')
        finally:
            await conn.close()


async def test_replaced_empty_database_is_rebuilt(database_url: str) -> None:
    await bootstrap_schema(database_url)
    parts = urlsplit(database_url)
    name = parts.path[1:]
    admin = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    result = await bootstrap_schema(database_url)
    assert result.applied == [m.filename for m in load_migrations()]
    assert not result.created_database


async def test_changed_checksum_stops_start_up_with_a_clear_message(
    database_url: str, tmp_path: Path
) -> None:
    _first, second = _write_migrations(tmp_path)
    await bootstrap_schema(database_url, migrations=load_migrations(tmp_path))
    second.write_text(second.read_text() + "-- an innocent-looking edit\n")
    with pytest.raises(MigrationChecksumMismatch, match=r"002_seed\.sql was changed"):
        await bootstrap_schema(database_url, migrations=load_migrations(tmp_path))
    # Nothing was applied past the refusal.
    assert await _fetchval(database_url, "SELECT count(*) FROM semantic.apply_log") == 2


async def test_start_up_waits_for_postgres_then_succeeds(tmp_path: Path) -> None:
    port = free_port()
    server = EmbeddedPostgres(tmp_path / "late-pg", port)
    dsn = server.url("late")
    # Until PostgreSQL starts, its port answers like a server not ready yet: it accepts and
    # hangs up at once. Each connection attempt of the bootstrap is counted.
    attempts = 0
    retried = asyncio.Event()

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal attempts
        attempts += 1
        writer.close()
        if attempts >= 3:
            retried.set()

    not_ready = await asyncio.start_server(hang_up, server.host, port)
    bootstrap = asyncio.create_task(bootstrap_schema(dsn, timeout_s=120))
    try:
        waiting = asyncio.create_task(retried.wait())
        await asyncio.wait({waiting, bootstrap}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        assert not bootstrap.done(), "bootstrap must keep retrying while nothing listens"
        not_ready.close()
        await not_ready.wait_closed()
        await asyncio.to_thread(server.start)
        result = await asyncio.wait_for(bootstrap, timeout=120)
        assert result.created_database
        assert result.applied == [m.filename for m in load_migrations()]
    finally:
        not_ready.close()
        bootstrap.cancel()
        await asyncio.to_thread(server.stop)
