"""How many rows a space's vector table holds (PostgreSQL's own estimate), and the
``hnsw.ef_search`` a search of a table that size runs with.

An HNSW graph's recall at a fixed ``ef_search`` falls as the graph grows: at 100k
embedding-like vectors ``ef_search`` 150 finds 0.99 of the true top 10, at 1M only 0.92
(300 finds 0.96, 400 0.97; ``semantic bench search --n 1000000``). The setting is therefore
the value for up to :data:`GROWTH_FROM` vectors, raised above that as
``(rows / GROWTH_FROM) ** growth`` (``SEMANTIC_SEARCH_EF_SEARCH_GROWTH``).

The row count is ``pg_class.reltuples``, which ANALYZE (autovacuum's or an explicit one)
keeps; a table never analysed counts as empty, so its searches keep the setting. It is
read at most once per :data:`REFRESH_S` per table, on the connection the search already
holds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import asyncpg

from semantic.store.postgres.db import MAX_EF_SEARCH

GROWTH_FROM = 100_000
"""Up to this many vectors a space searches with the configured ef_search."""
REFRESH_S = 60.0


def grown_ef_search(ef_search: int, rows: int, growth: float) -> int:
    """``ef_search`` for a table of ``rows`` vectors (see the module doc), at most
    ``MAX_EF_SEARCH``."""
    if growth <= 0 or rows <= GROWTH_FROM:
        return ef_search
    grown = math.ceil(ef_search * math.pow(rows / GROWTH_FROM, growth))
    return min(MAX_EF_SEARCH, grown)


class TableSizes:
    """Rows per vector table, each read at most once per ``refresh_s``."""

    def __init__(
        self, refresh_s: float = REFRESH_S, timer: Callable[[], float] = time.monotonic
    ) -> None:
        self._refresh_s = refresh_s
        self._timer = timer
        self._known: dict[str, tuple[int, float]] = {}

    async def rows(self, conn: asyncpg.Connection, table: str) -> int:
        """The estimated rows of ``table`` (a name from ``spaces.vector_table``)."""
        now = self._timer()
        known = self._known.get(table)
        if known is not None and known[1] > now:
            return known[0]
        # Claimed before the round trip: concurrent searches keep the old value meanwhile.
        self._known[table] = (known[0] if known else 0, now + self._refresh_s)
        value = await conn.fetchval(
            "SELECT greatest(c.reltuples, 0)::bigint FROM pg_class c WHERE c.oid = to_regclass($1)",
            table,
        )
        rows = int(value or 0)
        self._known[table] = (rows, now + self._refresh_s)
        return rows
