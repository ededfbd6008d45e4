"""The one id-or-slug resolver: which node a (tenant, id, slug) key names.

A key names its node by id when the id is set, else by slug (a node's slug is unique per
tenant). Every lookup of nodes named by id or slug goes through :func:`resolve_keys`: the
write path's deletes and slug-only upserts (``nodes.PostgresNodes.ids_by_slug``), the
recommender's examples and exclusions (``recommend_reads``) and tracked events
(``tracking_rows``).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

NodeKey = tuple[str, str, str]
"""(tenant, id, slug); an empty id means "by slug"."""


async def resolve_keys(
    conn: asyncpg.Connection, keys: Sequence[NodeKey]
) -> list[tuple[str, str | None] | None]:
    """(id, slug) of the node each key names, in the keys' order; None where none does."""
    if not keys:
        return []
    rows = await conn.fetch(
        "SELECT k.i, n.id, n.slug FROM unnest($1::text[], $2::text[], $3::text[])"
        " WITH ORDINALITY AS k(tenant, id, slug, i)"
        " JOIN semantic.nodes n ON n.tenant = k.tenant"
        " AND ((k.id <> '' AND n.id = k.id) OR (k.id = '' AND n.slug = k.slug))",
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
    )
    found = {int(r["i"]) - 1: (r["id"], r["slug"]) for r in rows}
    return [found.get(index) for index in range(len(keys))]
