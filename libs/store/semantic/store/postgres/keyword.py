"""The keyword side: BM25 postings kept by the write path and BM25 scored in SQL at query time.

PostgreSQL's own ranking (``ts_rank``) is not BM25 and ranks worse, so the write path keeps the
term statistics BM25 needs: ``semantic.postings`` (one row per tenant, lexeme and node with its
term frequency), ``semantic.nodes.doc_length`` (the node's number of indexed lexeme
occurrences) and ``semantic.keyword_stats`` (per tenant: indexed documents and their total
length). Lexemes come from ``to_tsvector`` with a text search configuration (``english``:
stemming and stop words), the same on both sides. A node counts as an indexed document when
it has at least one posting, so the statistics always equal what the postings hold.

Query time, in one statement: the distinct query lexemes, their document frequency in the
tenant, ``idf = ln(1 + (N - df + 0.5) / (df + 0.5))`` (Lucene's BM25) and
``score = sum(idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl)))`` over the node's
matching lexemes, with the search filter applied through the join to ``semantic.nodes``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

SEGMENT_CHARS = 4_000
"""Texts are indexed in segments of at most this many characters (cut at whitespace) and the
per-segment frequencies summed: a tsvector keeps at most 256 positions per lexeme and none past
16,383, so a long text fed whole would have its term frequencies clipped. A ~700-word segment
only clips a lexeme that makes up over a third of it."""

_LAST_SPACE = re.compile(r"\s\S*\Z")

# Old postings out; their totals come back so the statistics can be adjusted exactly.
_DELETE = """
WITH gone AS (
    DELETE FROM semantic.postings p
    WHERE p.tenant = $1 AND p.node_id = ANY($2::text[])
    RETURNING p.node_id, p.tf
)
SELECT count(DISTINCT node_id) AS documents, coalesce(sum(tf), 0)::bigint AS total_length
FROM gone
"""

_INSERT = """
WITH segment AS (
    SELECT s.node_id, s.body FROM unnest($2::text[], $3::text[]) AS s (node_id, body)
),
lexeme AS (
    SELECT segment.node_id, t.lexeme, sum(coalesce(array_length(t.positions, 1), 1))::int AS tf
    FROM segment, unnest(to_tsvector($5::regconfig, segment.body)) AS t
    GROUP BY segment.node_id, t.lexeme
),
added AS (
    INSERT INTO semantic.postings (tenant, term, node_id, tf)
    SELECT $1, lexeme.lexeme, lexeme.node_id, lexeme.tf FROM lexeme
    ORDER BY lexeme.lexeme, lexeme.node_id  -- btree-friendly insertion order
    RETURNING node_id, tf
),
length AS (
    SELECT added.node_id, sum(added.tf)::int AS dl FROM added GROUP BY added.node_id
),
node_length AS (
    UPDATE semantic.nodes n SET doc_length = coalesce(length.dl, 0)
    FROM unnest($4::text[]) AS d (id) LEFT JOIN length ON length.node_id = d.id
    WHERE n.tenant = $1 AND n.id = d.id AND n.doc_length IS DISTINCT FROM coalesce(length.dl, 0)
)
SELECT (SELECT count(*) FROM length)::bigint AS documents,
       (SELECT coalesce(sum(dl), 0) FROM length)::bigint AS total_length
"""

# Every tenant's change in one statement, in tenant order: the one global order in which
# writers lock statistics rows, so concurrent batches over several tenants never deadlock.
_ADD_STATS = """
INSERT INTO semantic.keyword_stats AS k (tenant, documents, total_length)
SELECT d.tenant, d.documents, d.total_length
FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS d (tenant, documents, total_length)
ORDER BY d.tenant
ON CONFLICT (tenant) DO UPDATE
SET documents = k.documents + EXCLUDED.documents,
    total_length = k.total_length + EXCLUDED.total_length
"""

_ZERO_LENGTHS = """
UPDATE semantic.nodes SET doc_length = 0
WHERE tenant = $1 AND id = ANY($2::text[]) AND doc_length <> 0
"""

# {filter} is the fragment from filters.compile_filter (its parameters are $1..$m); {k} are
# this statement's own parameter numbers, after the filter's.
_SEARCH = """
WITH stats AS (
    SELECT documents::float8 AS n,
           greatest(total_length::float8 / greatest(documents, 1), 1.0) AS avgdl
    FROM semantic.keyword_stats WHERE tenant = ${tenant}
),
term AS (
    SELECT DISTINCT t.lexeme AS term
    FROM unnest(to_tsvector(${config}::regconfig, ${text}::text)) AS t
),
posting AS (
    SELECT p.term, p.node_id, p.tf, count(*) OVER (PARTITION BY p.term) AS df
    FROM term JOIN semantic.postings p ON p.tenant = ${tenant} AND p.term = term.term
),
scored AS (
    SELECT posting.node_id,
           sum(ln(1.0 + (stats.n - posting.df + 0.5) / (posting.df + 0.5))
               * posting.tf * (${k1} + 1.0)
               / (posting.tf + ${k1} * (1.0 - ${b} + ${b} * n.doc_length / stats.avgdl))) AS score
    FROM posting
    CROSS JOIN stats
    JOIN semantic.nodes n ON n.tenant = ${tenant} AND n.id = posting.node_id
    WHERE {filter}
    GROUP BY posting.node_id
)
SELECT node_id, score FROM scored ORDER BY score DESC, node_id LIMIT ${limit}
"""


@dataclass
class StatsDelta:
    """Changes to tenants' keyword statistics made by a transaction, applied at its end.

    Postings are written per node (under the node's lock); the per-tenant totals are shared
    by every writer of the tenant, so they are changed once, last, for all tenants in one
    statement (:func:`add_stats`): the row locks are then taken in one order and held only
    until commit.
    """

    by_tenant: dict[str, tuple[int, int]] = field(default_factory=dict)

    def add(self, tenant: str, documents: int, total_length: int) -> None:
        """Count ``documents`` and ``total_length`` more (or fewer) for ``tenant``."""
        docs, length = self.by_tenant.get(tenant, (0, 0))
        self.by_tenant[tenant] = (docs + documents, length + total_length)


async def index_postings(
    conn: asyncpg.Connection,
    tenant: str,
    docs: Sequence[tuple[str, str]],
    stats: StatsDelta,
    *,
    text_config: str,
) -> None:
    """Replace the postings of each ``(node_id, text)``; the change to the tenant's statistics
    is added to ``stats`` (apply it with :func:`add_stats` before commit).

    Call it inside the caller's transaction, after the node rows are written (their
    ``doc_length`` is set here) and while the caller holds the nodes' write locks, so that
    two writers never index the same node at once. A node id given twice keeps its last text.
    Set-based: two statements for the whole batch, whatever its size.
    """
    latest = dict(docs)
    if not latest:
        return
    ids = list(latest)
    seg_ids: list[str] = []
    seg_texts: list[str] = []
    for node_id, text in latest.items():
        for piece in _segments(text):
            seg_ids.append(node_id)
            seg_texts.append(piece)
    old = await conn.fetchrow(_DELETE, tenant, ids)
    new = await conn.fetchrow(_INSERT, tenant, seg_ids, seg_texts, ids, text_config)
    assert old is not None
    assert new is not None
    stats.add(
        tenant,
        new["documents"] - old["documents"],
        new["total_length"] - old["total_length"],
    )


async def remove_postings(
    conn: asyncpg.Connection, tenant: str, node_ids: Sequence[str], stats: StatsDelta
) -> None:
    """Delete the postings of ``node_ids``; what they counted is taken out of ``stats``.

    The amounts subtracted are read from the deleted postings themselves, so this is right
    whether it runs before or after the node rows are deleted; run it in the same
    transaction as the node deletion. Nodes still present get ``doc_length = 0``.
    """
    ids = list(dict.fromkeys(node_ids))
    if not ids:
        return
    gone = await conn.fetchrow(_DELETE, tenant, ids)
    assert gone is not None
    stats.add(tenant, -gone["documents"], -gone["total_length"])
    await conn.execute(_ZERO_LENGTHS, tenant, ids)


async def add_stats(conn: asyncpg.Connection, stats: StatsDelta) -> None:
    """Apply the collected changes to the tenants' statistics, in tenant order."""
    changed = sorted((t, d) for t, d in stats.by_tenant.items() if d != (0, 0))
    if not changed:
        return
    await conn.execute(
        _ADD_STATS,
        [t for t, _ in changed],
        [d[0] for t, d in changed],
        [d[1] for t, d in changed],
    )
    stats.by_tenant.clear()


async def keyword_search(
    conn: asyncpg.Connection,
    tenant: str,
    text: str,
    *,
    filter_sql: str,
    filter_params: Sequence[Any],
    limit: int,
    text_config: str,
    k1: float,
    b: float,
) -> list[tuple[str, float]]:
    """The ``limit`` best ``(node_id, bm25 score)`` for ``text``, best first, in one round trip.

    ``filter_sql`` / ``filter_params`` come from ``filters.compile_filter(..., start=1)``:
    the filter's parameters are ``$1..$m`` and this query numbers its own after them. A
    query with no indexable lexeme (empty, or only stop words) matches nothing.
    """
    if limit <= 0:
        return []
    params: list[Any] = list(filter_params)
    numbers: dict[str, str] = {}
    for name, value in (
        ("tenant", tenant),
        ("config", text_config),
        ("text", text.replace("\x00", " ")),
        ("k1", float(k1)),
        ("b", float(b)),
        ("limit", int(limit)),
    ):
        params.append(value)
        numbers[name] = str(len(params))
    numbers["filter"] = filter_sql
    sql = _SEARCH.format(**numbers)
    rows = await conn.fetch(sql, *params)
    return [(row["node_id"], float(row["score"])) for row in rows]


def _segments(text: str) -> list[str]:
    """``text`` cut at whitespace into pieces of at most SEGMENT_CHARS characters."""
    text = text.replace("\x00", " ")
    pieces = []
    while len(text) > SEGMENT_CHARS:
        space = _LAST_SPACE.search(text, SEGMENT_CHARS // 2, SEGMENT_CHARS)
        cut = space.start() if space is not None else SEGMENT_CHARS
        pieces.append(text[:cut])
        text = text[cut:]
    if text.strip():
        pieces.append(text)
    return pieces
