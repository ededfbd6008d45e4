"""Embedding spaces: the registry rows, their vector tables and the `active` alias.

A space is a model (id + sha256 + dim) at a version. Each space owns the table
``semantic.vectors_<id>`` with an HNSW cosine index created on the empty table. The
alias ``active`` names the space search reads; switching it (or rolling it back) is a
single UPDATE, so readers see either the old space or the new one, never a mix.
Table names are built from the integer id only, never from input.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from semantic.common.errors import FailedPrecondition, NotFound

ACTIVE = "active"


class NoActiveSpace(FailedPrecondition):
    """No space is active: nothing was set up yet, or the database was emptied."""

    def __init__(self) -> None:
        super().__init__("no active embedding space yet")


@dataclass(frozen=True)
class Space:
    """One row of semantic.embedding_spaces."""

    id: int
    model_id: str
    model_sha256: str
    dim: int
    version: int
    state: str
    created_at: datetime
    activated_at: datetime | None
    build: dict[str, Any]

    @property
    def table(self) -> str:
        """Schema-qualified name of this space's vector table."""
        return vector_table(self.id)


def vector_table(space_id: int) -> str:
    """``semantic.vectors_<id>``; ``space_id`` is an int by type, never text from a client."""
    return f"semantic.vectors_{int(space_id)}"


def _vector_table_ddl(space_id: int, dim: int, m: int, ef_construction: int) -> str:
    table = vector_table(space_id)
    return f"""
CREATE TABLE IF NOT EXISTS {table} (
    tenant           text    NOT NULL,
    node_id          text    NOT NULL,
    name             text    NOT NULL,
    chunk            integer NOT NULL,
    content_hash     text    NOT NULL,
    span_start       integer NOT NULL DEFAULT 0,
    span_end         integer NOT NULL DEFAULT 0,
    client_supplied  boolean NOT NULL DEFAULT false,
    embedding        vector({int(dim)}) NOT NULL,
    PRIMARY KEY (tenant, node_id, name, chunk)
);
CREATE INDEX IF NOT EXISTS vectors_{int(space_id)}_hnsw ON {table}
    USING hnsw (embedding vector_cosine_ops)
    WITH (m = {int(m)}, ef_construction = {int(ef_construction)});
"""


_COLUMNS = "id, model_id, model_sha256, dim, version, state, created_at, activated_at, build"


def _space(row: asyncpg.Record) -> Space:
    build = row["build"]
    return Space(
        id=row["id"],
        model_id=row["model_id"],
        model_sha256=row["model_sha256"],
        dim=row["dim"],
        version=row["version"],
        state=row["state"],
        created_at=row["created_at"],
        activated_at=row["activated_at"],
        build=build if isinstance(build, dict) else {},
    )


async def ensure_space(
    conn: asyncpg.Connection,
    *,
    model_id: str,
    model_sha256: str,
    dim: int,
    activate_if_none: bool = True,
    m: int = 16,
    ef_construction: int = 64,
) -> Space:
    """The space for this model (created with its table and index if missing).

    When no space is active yet, the new one becomes active: the very first model of
    an installation is served at once (its vectors fill in as content arrives).
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('semantic.spaces'))")
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM semantic.embedding_spaces"
            " WHERE model_id = $1 AND model_sha256 = $2 AND dim = $3"
            " ORDER BY version DESC LIMIT 1",
            model_id,
            model_sha256,
            dim,
        )
        if row is None:
            row = await conn.fetchrow(
                "INSERT INTO semantic.embedding_spaces (model_id, model_sha256, dim)"
                f" VALUES ($1, $2, $3) RETURNING {_COLUMNS}",
                model_id,
                model_sha256,
                dim,
            )
            assert row is not None
        space = _space(row)
        # Re-created if it went missing (a truncated or replaced database).
        await conn.execute(_vector_table_ddl(space.id, space.dim, m, ef_construction))
        if activate_if_none:
            active = await conn.fetchval(
                "SELECT space_id FROM semantic.space_aliases WHERE name = $1", ACTIVE
            )
            if active is None:
                await _point_alias(conn, space.id)
                space = await _get(conn, space.id)
    return space


async def reindex_space(
    conn: asyncpg.Connection,
    *,
    model_id: str,
    model_sha256: str,
    dim: int,
    build: dict[str, Any],
    force_new: bool = False,
    m: int = 16,
    ef_construction: int = 64,
) -> tuple[Space, bool]:
    """A BUILDING space for this model (its table and HNSW index created empty), and
    whether it was created. Without ``force_new`` an existing BUILDING or READY space of
    the same model is returned instead, and so is the active space when it holds the
    model already (nothing to rebuild)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('semantic.spaces'))")
        if not force_new:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM semantic.embedding_spaces"
                " WHERE model_id = $1 AND model_sha256 = $2 AND dim = $3"
                " AND state IN ('building', 'ready', 'active') ORDER BY version DESC LIMIT 1",
                model_id,
                model_sha256,
                dim,
            )
            if row is not None:
                return _space(row), False
        row = await conn.fetchrow(
            "INSERT INTO semantic.embedding_spaces (model_id, model_sha256, dim, version, build)"
            " SELECT $1, $2, $3, coalesce(max(version), 0) + 1, $4::jsonb"
            " FROM semantic.embedding_spaces"
            " WHERE model_id = $1 AND model_sha256 = $2 AND dim = $3"
            f" RETURNING {_COLUMNS}",
            model_id,
            model_sha256,
            dim,
            build,
        )
        assert row is not None
        space = _space(row)
        await conn.execute(_vector_table_ddl(space.id, space.dim, m, ef_construction))
        return space, True


async def active_space(conn: asyncpg.Connection) -> Space:
    """The space search reads; FailedPrecondition when none is set up yet."""
    row = await conn.fetchrow(
        f"SELECT {', '.join('s.' + c for c in _COLUMNS.split(', '))}"
        " FROM semantic.space_aliases a JOIN semantic.embedding_spaces s ON s.id = a.space_id"
        " WHERE a.name = $1",
        ACTIVE,
    )
    if row is None:
        raise NoActiveSpace()
    return _space(row)


async def get_space(conn: asyncpg.Connection, space_id: int) -> Space:
    """One space by id; NotFound when it does not exist."""
    return await _get(conn, space_id)


async def list_spaces(conn: asyncpg.Connection) -> list[Space]:
    """Every space, newest first."""
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM semantic.embedding_spaces ORDER BY id DESC")
    return [_space(r) for r in rows]


async def activate(
    conn: asyncpg.Connection, space_id: int, *, allow_building: bool = False
) -> tuple[int | None, Space]:
    """Point `active` at ``space_id`` in one transaction; returns (previous id, new space).

    ``allow_building`` is for the build that just filled the space."""
    async with conn.transaction():
        target = await _get(conn, space_id)
        if target.state == "failed" or (target.state == "building" and not allow_building):
            raise FailedPrecondition(
                f"space {space_id} is {target.state}; only a ready space can be activated"
            )
        previous = await _point_alias(conn, space_id)
        return previous, await _get(conn, space_id)


async def rollback(conn: asyncpg.Connection) -> tuple[int, Space]:
    """Point `active` back at the previous space; returns (the space left, the new active)."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT space_id, previous_space_id FROM semantic.space_aliases"
            " WHERE name = $1 FOR UPDATE",
            ACTIVE,
        )
        if row is None or row["previous_space_id"] is None:
            raise FailedPrecondition("there is no previous space to roll back to")
        await _point_alias(conn, row["previous_space_id"])
        return row["space_id"], await _get(conn, row["previous_space_id"])


async def _point_alias(conn: asyncpg.Connection, space_id: int) -> int | None:
    previous: int | None = await conn.fetchval(
        "SELECT space_id FROM semantic.space_aliases WHERE name = $1 FOR UPDATE", ACTIVE
    )
    if previous == space_id:
        return previous
    await conn.execute(
        "INSERT INTO semantic.space_aliases (name, space_id, previous_space_id, updated_at)"
        " VALUES ($1, $2, $3, now())"
        " ON CONFLICT (name) DO UPDATE SET space_id = EXCLUDED.space_id,"
        " previous_space_id = EXCLUDED.previous_space_id, updated_at = now()",
        ACTIVE,
        space_id,
        previous,
    )
    await conn.execute(
        "UPDATE semantic.embedding_spaces SET state = 'active', activated_at = now() WHERE id = $1",
        space_id,
    )
    if previous is not None:
        await conn.execute(
            "UPDATE semantic.embedding_spaces SET state = 'ready' WHERE id = $1", previous
        )
    return previous


async def _get(conn: asyncpg.Connection, space_id: int) -> Space:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM semantic.embedding_spaces WHERE id = $1", space_id
    )
    if row is None:
        raise NotFound("embedding space", str(space_id))
    return _space(row)
