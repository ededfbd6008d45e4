"""BM25 keyword search on real PostgreSQL: ranking, stemming, statistics kept by the write path."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from semantic.core.domain import Filter
from semantic.search.settings import SearchSettings
from semantic.store.postgres.filters import compile_filter
from semantic.store.postgres.keyword import (
    StatsDelta,
    add_stats,
    index_postings,
    keyword_search,
    remove_postings,
)
from semantic.store.postgres.schema import bootstrap_schema

NO_FILTER = Filter()
DEFAULTS = SearchSettings.model_fields
TEXT_CONFIG = DEFAULTS["search_text_config"].default


@pytest_asyncio.fixture
async def kw(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    await bootstrap_schema(database_url)
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()


async def _add_nodes(
    conn: asyncpg.Connection, docs: dict[str, str], tenant: str = "", content_type: str = "doc"
) -> None:
    async with conn.transaction():
        await conn.executemany(
            "INSERT INTO semantic.nodes (tenant, id, content_type, body, content_hash)"
            " VALUES ($1, $2, $3, $4, '')"
            " ON CONFLICT (tenant, id) DO UPDATE SET body = EXCLUDED.body",
            [(tenant, node_id, content_type, text) for node_id, text in docs.items()],
        )
        stats = StatsDelta()
        await index_postings(conn, tenant, list(docs.items()), stats, text_config=TEXT_CONFIG)
        await add_stats(conn, stats)


async def _search(
    conn: asyncpg.Connection, text: str, flt: Filter = NO_FILTER, tenant: str = "", **kw: Any
) -> list[tuple[str, float]]:
    sql, params = compile_filter(tenant, flt)
    kw.setdefault("text_config", TEXT_CONFIG)
    kw.setdefault("k1", DEFAULTS["search_bm25_k1"].default)
    kw.setdefault("b", DEFAULTS["search_bm25_b"].default)
    return await keyword_search(
        conn, tenant, text, filter_sql=sql, filter_params=params, limit=kw.pop("limit", 10), **kw
    )


async def _stats(conn: asyncpg.Connection, tenant: str = "") -> tuple[int, int]:
    row = await conn.fetchrow(
        "SELECT documents, total_length FROM semantic.keyword_stats WHERE tenant = $1", tenant
    )
    return (row["documents"], row["total_length"]) if row else (0, 0)


async def _truth(conn: asyncpg.Connection, tenant: str = "") -> tuple[int, int]:
    row = await conn.fetchrow(
        "SELECT count(DISTINCT node_id) AS d, coalesce(sum(tf), 0) AS t"
        " FROM semantic.postings WHERE tenant = $1",
        tenant,
    )
    assert row is not None
    lengths = await conn.fetchval(
        "SELECT coalesce(sum(doc_length), 0) FROM semantic.nodes WHERE tenant = $1", tenant
    )
    assert lengths == row["t"]
    return row["d"], row["t"]


async def test_a_rare_term_outranks_common_ones(kw: asyncpg.Connection) -> None:
    docs = {f"common{i}": "the market report covers prices and market trends" for i in range(20)}
    docs["heavy"] = "market market market prices prices report report trends"
    docs["rare"] = "a short note about zeolite"
    await _add_nodes(kw, docs)
    hits = await _search(kw, "market zeolite")
    assert hits[0][0] == "rare"
    assert {node for node, _ in hits[1:]} <= set(docs) - {"rare"}


async def test_scores_are_lucene_bm25(kw: asyncpg.Connection) -> None:
    docs = {
        "d1": "salmon omega fatty acids in salmon",
        "d2": "vitamin supplements and fatty diets",
        "d3": "salmon farming",
        "d4": "cardiovascular outcomes of omega supplements in older adults",
    }
    await _add_nodes(kw, docs)
    k1, b = 1.2, 0.75
    tokens = {
        "d1": ["salmon", "omega", "fatti", "acid", "salmon"],
        "d2": ["vitamin", "supplement", "fatti", "diet"],
        "d3": ["salmon", "farm"],
        "d4": ["cardiovascular", "outcom", "omega", "supplement", "older", "adult"],
    }
    avgdl = sum(map(len, tokens.values())) / len(tokens)

    def bm25(doc: str, terms: list[str]) -> float:
        total = 0.0
        for term in terms:
            df = sum(term in t for t in tokens.values())
            tf = tokens[doc].count(term)
            if tf:
                idf = math.log(1 + (len(tokens) - df + 0.5) / (df + 0.5))
                norm = tf + k1 * (1 - b + b * len(tokens[doc]) / avgdl)
                total += idf * tf * (k1 + 1) / norm
        return total

    hits = await _search(kw, "Salmon and omega", k1=k1, b=b)
    expected = sorted(
        ((d, bm25(d, ["salmon", "omega"])) for d in tokens if bm25(d, ["salmon", "omega"]) > 0),
        key=lambda x: -x[1],
    )
    assert [d for d, _ in hits] == [d for d, _ in expected]
    assert [s for _, s in hits] == pytest.approx([s for _, s in expected], rel=1e-9)


async def test_english_stemming_matches_word_forms(kw: asyncpg.Connection) -> None:
    await _add_nodes(kw, {"r": "She was running every morning", "w": "walking only"})
    assert [n for n, _ in await _search(kw, "run")] == ["r"]
    assert [n for n, _ in await _search(kw, "runs")] == ["r"]
    assert await _search(kw, "the and of") == []  # stop words only
    assert await _search(kw, "") == []


async def test_statistics_follow_reindexing_and_removal(kw: asyncpg.Connection) -> None:
    await _add_nodes(kw, {"a": "alpha beta gamma", "b": "beta gamma", "c": "gamma"})
    assert await _stats(kw) == (3, 6) == await _truth(kw)
    await _add_nodes(kw, {"a": "alpha beta gamma", "b": "beta gamma", "c": "gamma"})
    assert await _stats(kw) == (3, 6)  # re-indexing the same text changes nothing
    await _add_nodes(kw, {"a": "delta", "c": "gamma gamma gamma gamma"})
    assert await _stats(kw) == (3, 7) == await _truth(kw)
    assert await _search(kw, "alpha") == []
    assert [n for n, _ in await _search(kw, "delta")] == ["a"]
    await _add_nodes(kw, {"b": "   "})  # nothing indexable: no longer a document
    assert await _stats(kw) == (2, 5) == await _truth(kw)
    async with kw.transaction():
        stats = StatsDelta()
        await remove_postings(kw, "", ["a", "a", "missing"], stats)
        await add_stats(kw, stats)
        await kw.execute("DELETE FROM semantic.nodes WHERE tenant = '' AND id = 'a'")
    assert await _stats(kw) == (1, 4) == await _truth(kw)
    assert await _search(kw, "delta") == []
    await _add_nodes(kw, {"z": "gamma"}, tenant="t2")
    assert await _stats(kw, "t2") == (1, 1)
    assert await _stats(kw) == (1, 4)


async def test_keyword_search_applies_the_filter_and_the_tenant(kw: asyncpg.Connection) -> None:
    await _add_nodes(kw, {"p1": "protein intake", "p2": "protein powder"}, content_type="product")
    await _add_nodes(kw, {"a1": "protein and muscle"}, content_type="article")
    await _add_nodes(kw, {"x1": "protein"}, tenant="other")
    found = await _search(kw, "protein", Filter(content_types=("product",)))
    assert sorted(n for n, _ in found) == ["p1", "p2"]
    assert [n for n, _ in await _search(kw, "protein", tenant="other")] == ["x1"]
    assert len(await _search(kw, "protein", limit=2)) == 2


async def test_long_texts_count_every_occurrence(kw: asyncpg.Connection) -> None:
    text = " ".join(["alpha beta gamma delta"] * 10_000)  # 40,000 words, past tsvector limits
    await _add_nodes(kw, {"long": text, "short": "alpha"})
    tf = await kw.fetchval(
        "SELECT tf FROM semantic.postings WHERE tenant = '' AND term = 'alpha' AND node_id = 'long'"
    )
    assert tf == 10_000
    assert await _stats(kw) == (2, 40_001) == await _truth(kw)
