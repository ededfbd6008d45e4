"""The local index's change feed against a real PostgreSQL: what the change log cannot say
(a TRUNCATE, a change log made anew by a restore, a cursor from another cluster) is a
reset, so the follower rebuilds instead of serving rows the database no longer has."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from semantic.core.degraded import NodeChange
from semantic.store.postgres import spaces
from semantic.store.postgres.changes import PostgresChanges
from semantic.store.postgres.db import create_pool, default_session_settings
from semantic.store.postgres.schema import bootstrap_schema

DIM = 8


async def _space(database_url: str) -> spaces.Space:
    await bootstrap_schema(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        return await spaces.ensure_space(conn, model_id="m", model_sha256="s", dim=DIM)
    finally:
        await conn.close()


async def test_truncate_and_a_remade_change_log_are_resets(database_url: str) -> None:
    space = await _space(database_url)
    pool = await create_pool(database_url, session_settings=default_session_settings())
    applied: list[NodeChange] = []

    async def apply(changes: Sequence[NodeChange]) -> None:
        applied.extend(changes)

    try:
        async with pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO semantic.nodes (tenant, id, content_type, title, content_hash)"
                " VALUES ('', 'a', 'page', 'A', 'h'), ('', 'b', 'page', 'B', 'h')"
            )
        feed = PostgresChanges(pool)
        cursor = await feed.snapshot(space, apply, batch=100)
        assert {c.key for c in applied} == {("", "a"), ("", "b")}
        followed = await feed.changes(space, cursor, apply, batch=100)
        assert followed.reset == ""
        async with pool.acquire() as conn:
            await conn.execute("DELETE FROM semantic.nodes WHERE id = 'b'")
        followed = await feed.changes(space, followed.cursor, apply, batch=100)
        assert (followed.reset, followed.changed) == ("", 1)  # a delete is a row change
        async with pool.acquire() as conn:
            await conn.execute("TRUNCATE semantic.nodes CASCADE")
        applied.clear()
        truncated = await feed.changes(space, followed.cursor, apply, batch=100)
        assert "truncated" in truncated.reset
        assert applied == []  # nothing handed over: the caller rebuilds
        cursor = await feed.snapshot(space, apply, batch=100)
        assert (await feed.changes(space, cursor, apply, batch=100)).reset == ""
        # A cursor the database's transactions have not reached: another cluster.
        ahead = await feed.changes(space, cursor + 10**9, apply, batch=100)
        assert "another cluster" in ahead.reset
        # The schema made anew (a restore would bring back the same spaces and rows).
        async with pool.acquire() as conn:
            await conn.execute("DROP SCHEMA semantic CASCADE")
        space = await _space(database_url)
        remade = await feed.changes(space, cursor, apply, batch=100)
        assert "made anew" in remade.reset
    finally:
        await pool.close()
