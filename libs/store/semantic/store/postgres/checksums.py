"""Table checksums: a row count and an md5 over every row of each table a snapshot carries,
so that two databases (a source and its restore) can be compared table by table.

Vector tables are keyed by their space's model identity (model id, model sha256, dim,
version) instead of their numeric id, and the spaces table leaves its id out, because a
restore into another database may number the spaces differently. ``keyword_stats`` and
``node_feedback`` are not in a snapshot but are rebuilt on import (from the postings, from
the feedback reports), so they must match too.
"""

from __future__ import annotations

import asyncpg

from semantic.core.spaces import vector_table
from semantic.store.postgres.snapshot import TABLES

DERIVED = ("keyword_stats", "node_feedback")
"""Tables an import rebuilds rather than copies; compared all the same."""

Checksums = dict[str, tuple[int, str]]
"""Table key -> (row count, md5 of the rows in a stable order; "" when empty)."""


def vectors_key(model_id: str, model_sha256: str, dim: int, version: int) -> str:
    """The checksum key of a space's vector table, e.g. ``vectors:all-minilm@1a2b…/384v1``."""
    return f"vectors:{model_id}@{model_sha256[:12]}/{dim}v{version}"


async def table_checksums(conn: asyncpg.Connection) -> Checksums:
    """Count and md5 of every snapshot table, ``embedding_spaces`` and each space's vectors.

    Each row is hashed through its text form, ordered by that text, so the result does not
    depend on physical order or insertion history. Tables missing from the schema are left
    out. Reads in one REPEATABLE READ transaction: one point in time."""
    out: Checksums = {}
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for name in (*(t.name for t in TABLES), *DERIVED):
            if await conn.fetchval("SELECT to_regclass($1)", f"semantic.{name}") is None:
                continue
            out[name] = await _rows(
                conn,
                f"SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t::text))"
                f" FROM semantic.{name} t",
            )
        out["embedding_spaces"] = await _rows(
            conn,
            "SELECT count(*), md5(string_agg(k, '|' ORDER BY k)) FROM (SELECT"
            " (model_id, model_sha256, dim, version, state)::text AS k"
            " FROM semantic.embedding_spaces) s",
        )
        spaces = await conn.fetch(
            "SELECT id, model_id, model_sha256, dim, version FROM semantic.embedding_spaces"
            " WHERE to_regclass('semantic.vectors_' || id) IS NOT NULL ORDER BY id"
        )
        for space in spaces:
            key = vectors_key(
                space["model_id"], space["model_sha256"], space["dim"], space["version"]
            )
            out[key] = await _rows(
                conn,
                f"SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t::text))"
                f" FROM {vector_table(space['id'])} t",
            )
    return out


def differing(left: Checksums, right: Checksums) -> list[str]:
    """The keys whose checksum differs, or that only one side has, sorted."""
    return sorted(k for k in left.keys() | right.keys() if left.get(k) != right.get(k))


async def _rows(conn: asyncpg.Connection, sql: str) -> tuple[int, str]:
    row = await conn.fetchrow(sql)
    assert row is not None  # an aggregate always returns one row
    return int(row[0]), str(row[1] or "")
