"""Embedding spaces in PostgreSQL: the registry rows, their vector tables and the `active` alias.

A space (``semantic.core.spaces.Space``) is a model (id + sha256 + dim) at a version.
Each space owns the table ``semantic.vectors_<id>`` with an HNSW cosine index created on
the empty table: on the ``embedding`` column itself (index precision ``float32``) or on its
half-precision copy ``embedding::halfvec(dim)`` (``half``: half the index size; the column
stays full precision). The precision is recorded on the space's row when it is created and
never changes; queries that must use the index order by the same expression
(``dense.dense_search`` with ``halfvec_dim``). The alias ``active`` names the space search
reads; switching it (or rolling it back) is a single UPDATE, so readers see either the old
space or the new one, never a mix.
Table names are built from the integer id only, never from input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import structlog

from semantic.common.errors import FailedPrecondition, NotFound
from semantic.core.spaces import (
    ACTIVE,
    DEFAULT_INDEX_PRECISION,
    INDEX_PRECISIONS,
    IndexPrecision,
    NoActiveSpace,
    Space,
    vector_table,
)
from semantic.store.postgres.db import ReadConnections, connection

log = structlog.get_logger(__name__)

HNSW_M = 16
"""HNSW graph degree of a space's vector index."""
HNSW_EF_CONSTRUCTION = 64
"""HNSW build-time candidate list of a space's vector index."""

__all__ = [
    "PostgresSpaces",
    "Space",
    "activate",
    "active_space",
    "ensure_space",
    "ensure_vector_table",
    "get_space",
    "halfvec_dim",
    "hnsw_key",
    "list_spaces",
    "reindex_space",
    "rollback",
    "vectors_lost",
]


def hnsw_key(dim: int, index_precision: IndexPrecision) -> str:
    """The key and operator class of a space's HNSW index; ``dense`` orders by the same
    expression (``v.embedding::halfvec(dim)`` for ``half``), or the index is not used."""
    if index_precision == "half":
        return f"(embedding::halfvec({int(dim)})) halfvec_cosine_ops"
    return "embedding vector_cosine_ops"


def halfvec_dim(index_precision: IndexPrecision, dim: int) -> int | None:
    """What ``dense.dense_search`` needs to order by a space's HNSW index key: the
    dimension its ``half`` index casts to, or None for a ``float32`` index."""
    return int(dim) if index_precision == "half" else None


def _vector_table_ddl(
    space_id: int, dim: int, m: int, ef_construction: int, index_precision: IndexPrecision
) -> str:
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
    USING hnsw ({hnsw_key(dim, index_precision)})
    WITH (m = {int(m)}, ef_construction = {int(ef_construction)});
CREATE OR REPLACE TRIGGER vectors_{int(space_id)}_changes
    AFTER INSERT OR UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION semantic.log_vector_change({int(space_id)});
CREATE OR REPLACE TRIGGER vectors_{int(space_id)}_truncated
    AFTER TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION semantic.log_truncate({int(space_id)});
"""


async def ensure_vector_table(
    conn: asyncpg.Connection,
    space: Space,
    *,
    m: int = HNSW_M,
    ef_construction: int = HNSW_EF_CONSTRUCTION,
) -> None:
    """Create the space's vector table, its HNSW index (at the space's index precision) and
    its change trigger where missing: after a bulk load into a table whose index was
    dropped, this builds the index. A table left without its ``embedding`` column (the
    ``vector`` extension dropped with CASCADE takes the column and its index along) holds
    no vector any more: it is dropped and made again, and heal fills it."""
    if await vectors_lost(conn, space.id):
        log.warning("vector_table_recreated", space=space.id, reason="its embedding column is gone")
        await conn.execute(f"DROP TABLE {vector_table(space.id)}")
    await conn.execute(
        _vector_table_ddl(space.id, space.dim, m, ef_construction, space.index_precision)
    )


async def vectors_lost(conn: asyncpg.Connection, space_id: int) -> bool:
    """Whether the space's vector table exists without its ``embedding`` column."""
    lost: bool = await conn.fetchval(
        "SELECT to_regclass($1) IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_attribute"
        " WHERE attrelid = to_regclass($1) AND attname = 'embedding' AND NOT attisdropped)",
        vector_table(space_id),
    )
    return lost


_COLUMNS = (
    "id, model_id, model_sha256, dim, version, state, created_at, activated_at, build,"
    " index_precision"
)


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
        index_precision=row["index_precision"],
    )


def _check_precision(index_precision: str) -> IndexPrecision:
    for known in INDEX_PRECISIONS:
        if index_precision == known:
            return known
    raise ValueError(f"index precision {index_precision!r} is not one of {INDEX_PRECISIONS}")


async def ensure_space(
    conn: asyncpg.Connection,
    *,
    model_id: str,
    model_sha256: str,
    dim: int,
    activate_if_none: bool = True,
    m: int = HNSW_M,
    ef_construction: int = HNSW_EF_CONSTRUCTION,
    index_precision: IndexPrecision = DEFAULT_INDEX_PRECISION,
) -> Space:
    """The space for this model (created with its table and index if missing).

    When no space is active yet, the new one becomes active: the very first model of
    an installation is served at once (its vectors fill in as content arrives).
    ``index_precision`` applies to a space created here; an existing one keeps its own.
    """
    precision = _check_precision(index_precision)
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
                "INSERT INTO semantic.embedding_spaces"
                " (model_id, model_sha256, dim, index_precision)"
                f" VALUES ($1, $2, $3, $4) RETURNING {_COLUMNS}",
                model_id,
                model_sha256,
                dim,
                precision,
            )
            assert row is not None
        space = _space(row)
        # Re-created if it went missing (a truncated or replaced database).
        await ensure_vector_table(conn, space, m=m, ef_construction=ef_construction)
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
    m: int = HNSW_M,
    ef_construction: int = HNSW_EF_CONSTRUCTION,
    index_precision: IndexPrecision = DEFAULT_INDEX_PRECISION,
) -> tuple[Space, bool]:
    """A BUILDING space for this model at ``index_precision`` (its table and HNSW index
    created empty), and whether it was created. Without ``force_new`` an existing BUILDING
    or READY space of the same model and index precision is returned instead, and so is
    the active space when it holds them already (nothing to rebuild): a space of another
    precision is rebuilt, which is how a deployment changes its index precision."""
    precision = _check_precision(index_precision)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('semantic.spaces'))")
        if not force_new:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM semantic.embedding_spaces"
                " WHERE model_id = $1 AND model_sha256 = $2 AND dim = $3"
                " AND index_precision = $4"
                " AND state IN ('building', 'ready', 'active') ORDER BY version DESC LIMIT 1",
                model_id,
                model_sha256,
                dim,
                precision,
            )
            if row is not None:
                return _space(row), False
        row = await conn.fetchrow(
            "INSERT INTO semantic.embedding_spaces"
            " (model_id, model_sha256, dim, version, build, index_precision)"
            " SELECT $1, $2, $3, coalesce(max(version), 0) + 1, $4::jsonb, $5"
            " FROM semantic.embedding_spaces"
            " WHERE model_id = $1 AND model_sha256 = $2 AND dim = $3"
            f" RETURNING {_COLUMNS}",
            model_id,
            model_sha256,
            dim,
            build,
            precision,
        )
        assert row is not None
        space = _space(row)
        await ensure_vector_table(conn, space, m=m, ef_construction=ef_construction)
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


class PostgresSpaces:
    """The space registry over a pool (the core's ``SpaceRegistry``), plus what only the
    store's own callers need: creating spaces and counting their vectors."""

    def __init__(
        self, pool: asyncpg.Pool, *, index_precision: IndexPrecision = DEFAULT_INDEX_PRECISION
    ) -> None:
        self._pool = pool
        self._reads = ReadConnections(pool)
        self._index_precision = _check_precision(index_precision)

    @property
    def index_precision(self) -> IndexPrecision:
        """The HNSW index precision of the spaces this registry creates."""
        return self._index_precision

    async def active(self) -> Space:
        """The space search reads; NoActiveSpace when none is set up yet. (A read-path
        lease: the search that finds the cached space expired waits for no session reset.)"""
        async with self._reads.reading() as conn:
            return await active_space(conn)

    async def get(self, space_id: int) -> Space:
        """One space by id; NotFound when it does not exist."""
        async with self._reads.reading() as conn:
            return await get_space(conn, space_id)

    async def list_all(self) -> list[Space]:
        """Every space, newest first."""
        async with connection(self._pool) as conn:
            return await list_spaces(conn)

    async def activate(
        self, space_id: int, *, allow_building: bool = False
    ) -> tuple[int | None, Space]:
        """Point ``active`` at ``space_id``; (previous id, new space)."""
        async with connection(self._pool) as conn:
            return await activate(conn, space_id, allow_building=allow_building)

    async def rollback(self) -> tuple[int, Space]:
        """Point ``active`` back at the previous space; (space left, new active)."""
        async with connection(self._pool) as conn:
            return await rollback(conn)

    async def mark_ready(self, space_id: int) -> Space:
        """A built space waits for a manual switch (state READY)."""
        async with connection(self._pool) as conn:
            await conn.execute(
                "UPDATE semantic.embedding_spaces SET state = 'ready' WHERE id = $1", space_id
            )
            return await get_space(conn, space_id)

    async def save_build(self, space_id: int, build: dict[str, Any]) -> None:
        """Record the progress of a space build (the registry row's ``build``)."""
        async with connection(self._pool) as conn:
            await conn.execute(
                "UPDATE semantic.embedding_spaces SET build = $2::jsonb WHERE id = $1",
                space_id,
                build,
            )

    async def ensure(self, *, model_id: str, model_sha256: str, dim: int) -> Space:
        """The space of this model, created (and activated when none is) if missing."""
        async with connection(self._pool) as conn:
            return await ensure_space(
                conn,
                model_id=model_id,
                model_sha256=model_sha256,
                dim=dim,
                index_precision=self._index_precision,
            )

    async def reindex(
        self,
        *,
        model_id: str,
        model_sha256: str,
        dim: int,
        build: dict[str, Any],
        force_new: bool = False,
    ) -> tuple[Space, bool]:
        """A BUILDING space for this model at this registry's index precision and whether
        it was created (``reindex_space``)."""
        async with connection(self._pool) as conn:
            return await reindex_space(
                conn,
                model_id=model_id,
                model_sha256=model_sha256,
                dim=dim,
                build=build,
                force_new=force_new,
                index_precision=self._index_precision,
            )

    async def vector_counts(self, found: Sequence[Space]) -> dict[int, tuple[int, int]]:
        """(vector rows, nodes with vectors) of each space; (0, 0) when its table is gone."""
        async with connection(self._pool) as conn:
            return {s.id: await _vector_counts(conn, s) for s in found}

    async def vector_extension(self) -> str:
        """The installed pgvector version, as ``pgvector <version>`` (a health probe)."""
        async with connection(self._pool) as conn:
            version = await conn.fetchval(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            )
        return f"pgvector {version}"


async def _vector_counts(conn: asyncpg.Connection, space: Space) -> tuple[int, int]:
    try:
        row = await conn.fetchrow(
            f"SELECT count(*) AS v, count(DISTINCT (tenant, node_id)) AS n"
            f" FROM {vector_table(space.id)}"
        )
    except asyncpg.UndefinedTableError:
        return 0, 0
    return (int(row["v"]), int(row["n"])) if row else (0, 0)
