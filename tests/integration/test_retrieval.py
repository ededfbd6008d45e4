"""Dense retrieval on real PostgreSQL + pgvector: 20,000 nodes, filters never shrinking top_k."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import numpy as np
import pytest
import pytest_asyncio
from pgvector.asyncpg import register_vector

from semantic.common.errors import InvalidArgument
from semantic.core.domain import (
    Filter,
    VectorTarget,
)
from semantic.store.postgres import dense
from semantic.store.postgres.db import (
    ReadConnections,
    connection,
    create_pool,
    session_settings,
)
from semantic.store.postgres.dense import DenseHit, dense_search
from semantic.store.postgres.filters import compile_filter
from semantic.store.postgres.schema import bootstrap_schema
from semantic.store.postgres.spaces import ensure_space
from semantic.store.postgres.table_sizes import TableSizes, grown_ef_search
from semantic.tools.devstack import EmbeddedPostgres

N_NODES = 20_000
DIM = 32
EF_SEARCH = 100
EXACT_THRESHOLD = 1000


# --- a 20,000-node corpus with clustered vectors, built once for the module ------------------


@dataclass
class Corpus:
    """The loaded corpus and everything needed to compute exact answers with numpy."""

    url: str
    table: str
    chunk_node: np.ndarray[Any, Any]  # node index of each "content" chunk row
    chunks: np.ndarray[Any, Any]  # unit-normalised "content" chunk vectors
    titles: dict[int, np.ndarray[Any, Any]]  # node index -> unit "title" vector (even nodes)


def _content_type(i: int) -> str:
    if i % 100 == 0:
        return "one_pct"  # 200 nodes
    if i % 2000 == 1:
        return "rare"  # 10 nodes
    return "doc"


def _tags(i: int) -> list[str]:
    return ["thirty"] if i % 10 in (1, 2, 3) else []  # 30 %


def _node_id(i: int) -> str:
    return f"n{i:05d}"


def _clustered(rng: np.random.Generator, n: int) -> np.ndarray[Any, Any]:
    """Points around 40 centres, spread along a few directions per centre (like embeddings).

    The clusters overlap enough for the HNSW graph to connect them: with tight, far-apart
    clusters a greedy graph search can miss a whole cluster, which tests no code of ours.
    """
    centres = rng.normal(size=(40, DIM))
    bases = rng.normal(size=(40, DIM, 6))
    cluster = rng.integers(0, 40, size=n)
    spread = np.einsum("nij,nj->ni", bases[cluster], rng.normal(size=(n, 6))) * 0.6
    points: np.ndarray[Any, Any] = centres[cluster] + spread + 0.1 * rng.normal(size=(n, DIM))
    return points.astype(np.float32)


@asynccontextmanager
async def _module_database(pg_server: EmbeddedPostgres) -> AsyncIterator[str]:
    """A database with the schema, shared by the read-only tests of one module."""
    name = f"t_{uuid.uuid4().hex}"
    pg_server.create_database(name)
    try:
        url = pg_server.url(name)
        await bootstrap_schema(url)
        yield url
    finally:
        pg_server.drop_database(name)


@pytest_asyncio.fixture(scope="module")
async def corpus(pg_server: EmbeddedPostgres) -> AsyncIterator[Corpus]:
    async with _module_database(pg_server) as url:
        conn = await asyncpg.connect(url)
        try:
            yield await _load(conn, url)
        finally:
            await conn.close()


async def _load(conn: asyncpg.Connection, url: str) -> Corpus:
    await register_vector(conn)
    space = await ensure_space(conn, model_id="test", model_sha256="0" * 64, dim=DIM)
    # Loading first and indexing after is several times faster than inserting into the
    # HNSW index; ensure_space puts the index back.
    index = await conn.fetchval(
        "SELECT indexname FROM pg_indexes WHERE schemaname = 'semantic' AND tablename = $1"
        " AND indexdef LIKE '%hnsw%'",
        space.table.split(".")[1],
    )
    await conn.execute(f"DROP INDEX semantic.{index}")
    rng = np.random.default_rng(20_000)
    await conn.copy_records_to_table(
        "nodes",
        schema_name="semantic",
        columns=["tenant", "id", "content_type", "tags", "metadata", "content_hash"],
        records=[
            ("", _node_id(i), _content_type(i), _tags(i), json.dumps({"k": i % 50}), "")
            for i in range(N_NODES)
        ],
    )
    chunk_node = np.array([i for i in range(N_NODES) for _ in range(2 if i % 4 == 0 else 1)])
    content = _clustered(rng, len(chunk_node))
    title_nodes = list(range(0, N_NODES, 2))
    title = _clustered(rng, len(title_nodes))
    records: list[tuple[Any, ...]] = []
    chunk_no: Counter[int] = Counter()
    for i, vector in zip(chunk_node.tolist(), content, strict=True):
        chunk = chunk_no[i]
        chunk_no[i] += 1
        records.append(
            ("", _node_id(i), "content", chunk, "", chunk * 100, chunk * 100 + 99, vector)
        )
    for i, vector in zip(title_nodes, title, strict=True):
        records.append(("", _node_id(i), "title", 0, "", 0, 10, vector))
    # Another tenant's copies of every query-like vector must never leak into results.
    for j in range(50):
        records.append(("other", _node_id(j), "content", 0, "", 0, 0, content[j]))
    await conn.copy_records_to_table(
        space.table.split(".")[1],
        schema_name="semantic",
        columns=[
            "tenant",
            "node_id",
            "name",
            "chunk",
            "content_hash",
            "span_start",
            "span_end",
            "embedding",
        ],
        records=records,
    )
    await conn.executemany(
        "INSERT INTO semantic.nodes (tenant, id, content_type, content_hash)"
        " VALUES ($1, $2, $3, '')",
        [("other", _node_id(j), "one_pct") for j in range(50)],
    )
    await ensure_space(conn, model_id="test", model_sha256="0" * 64, dim=DIM)
    await conn.execute("ANALYZE")
    return Corpus(
        url=url,
        table=space.table,
        chunk_node=chunk_node,
        chunks=_unit(content),
        titles=dict(zip(title_nodes, _unit(title), strict=True)),
    )


def _unit(m: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    unit: np.ndarray[Any, Any] = m / np.linalg.norm(m, axis=1, keepdims=True)
    return unit


@pytest_asyncio.fixture
async def conn(corpus: Corpus) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(corpus.url)
    await register_vector(connection)
    try:
        yield connection
    finally:
        await connection.close()


def _exact_top(
    corpus: Corpus,
    q: np.ndarray[Any, Any],
    allowed: Callable[[int], bool],
    k: int,
    weights: dict[str, float] | None = None,
) -> list[tuple[str, float]]:
    """The exact answer: best chunk per node and name, weighted mean over the targets."""
    weights = weights or {"content": 1.0}
    unit_q = q / np.linalg.norm(q)
    score = np.zeros(N_NODES)
    if "content" in weights:
        best = np.full(N_NODES, -np.inf)
        np.maximum.at(best, corpus.chunk_node, corpus.chunks @ unit_q)
        score += weights["content"] * best
    if "title" in weights:
        title = np.zeros(N_NODES)
        for i, vector in corpus.titles.items():
            title[i] = vector @ unit_q
        score += weights["title"] * title
    score /= sum(weights.values())
    mask = np.array([allowed(i) for i in range(N_NODES)])
    score[~mask] = -np.inf
    order = np.argsort(-score, kind="stable")[: min(k, int(mask.sum()))]
    return [(_node_id(int(i)), float(score[i])) for i in order]


def _queries(corpus: Corpus, n: int, seed: int) -> list[np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(corpus.chunks), size=n)
    return [(corpus.chunks[p] + 0.1 * rng.normal(size=DIM)).astype(np.float32) for p in picks]


async def _dense(
    conn: asyncpg.Connection,
    corpus: Corpus,
    q: np.ndarray[Any, Any],
    flt: Filter,
    k: int,
    *,
    exact_threshold: int = EXACT_THRESHOLD,
    targets: Sequence[VectorTarget] = (VectorTarget(),),
    tenant: str = "",
    **options: Any,
) -> list[DenseHit]:
    sql, params = compile_filter(tenant, flt)
    return await dense_search(
        conn,
        corpus.table,
        tenant,
        q,
        targets=targets,
        filter_sql=sql,
        filter_params=params,
        limit=k,
        ef_search=EF_SEARCH,
        exact_threshold=exact_threshold,
        **options,
    )


NO_FILTER = Filter()
ONE_PERCENT = Filter(content_types=("one_pct",))
RARE = Filter(content_types=("rare",))
THIRTY_PERCENT = Filter(tags_any=("thirty",))


@pytest.mark.parametrize("k", [10, 50])
async def test_a_filter_matching_one_percent_returns_the_full_exact_top_k(
    conn: asyncpg.Connection, corpus: Corpus, k: int
) -> None:
    for q in _queries(corpus, 5, seed=k):
        hits = await _dense(conn, corpus, q, ONE_PERCENT, k)
        exact = _exact_top(corpus, q, lambda i: _content_type(i) == "one_pct", k)
        assert len(hits) == k
        assert [h.node_id for h in hits] == [node for node, _ in exact]
        assert [h.score for h in hits] == pytest.approx([s for _, s in exact], abs=1e-5)


@pytest.mark.parametrize("k", [10, 50])
async def test_a_one_percent_filter_through_the_iterative_index_scan_keeps_the_full_top_k(
    conn: asyncpg.Connection, corpus: Corpus, k: int
) -> None:
    recalls = []
    for q in _queries(corpus, 5, seed=100 + k):
        hits = await _dense(conn, corpus, q, ONE_PERCENT, k, exact_threshold=0)
        exact = {node for node, _ in _exact_top(corpus, q, lambda i: i % 100 == 0, k)}
        assert len(hits) == k
        assert all(int(h.node_id[1:]) % 100 == 0 for h in hits)
        recalls.append(len(exact & {h.node_id for h in hits}) / k)
    assert np.mean(recalls) >= 0.9


@pytest.mark.parametrize(
    ("exact_threshold", "max_scan_tuples"), [(EXACT_THRESHOLD, 20_000), (0, 20_000), (0, 50)]
)
async def test_a_filter_matching_ten_nodes_returns_all_ten(
    conn: asyncpg.Connection, corpus: Corpus, exact_threshold: int, max_scan_tuples: int
) -> None:
    # Directly exact, or via the index scan that runs out of budget and falls back to exact.
    q = _queries(corpus, 1, seed=7)[0]
    hits = await _dense(
        conn, corpus, q, RARE, 50, exact_threshold=exact_threshold, max_scan_tuples=max_scan_tuples
    )
    exact = _exact_top(corpus, q, lambda i: _content_type(i) == "rare", 50)
    assert len(exact) == 10
    assert [h.node_id for h in hits] == [node for node, _ in exact]


@pytest.mark.parametrize("k", [10, 50])
async def test_a_thirty_percent_filter_fills_top_k_through_the_iterative_scan(
    conn: asyncpg.Connection, corpus: Corpus, k: int
) -> None:
    recalls = []
    for q in _queries(corpus, 5, seed=200 + k):
        hits = await _dense(conn, corpus, q, THIRTY_PERCENT, k)
        exact = {node for node, _ in _exact_top(corpus, q, lambda i: i % 10 in (1, 2, 3), k)}
        assert len(hits) == k
        assert all(int(h.node_id[1:]) % 10 in (1, 2, 3) for h in hits)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        recalls.append(len(exact & {h.node_id for h in hits}) / k)
    assert np.mean(recalls) >= 0.9


async def test_an_unfiltered_search_finds_the_nearest_nodes_and_their_best_chunk(
    conn: asyncpg.Connection, corpus: Corpus
) -> None:
    recalls = []
    for q in _queries(corpus, 5, seed=3):
        hits = await _dense(conn, corpus, q, Filter(), 10)
        exact = _exact_top(corpus, q, lambda i: True, 10)
        recalls.append(len({n for n, _ in exact} & {h.node_id for h in hits}) / 10)
        unit_q = q / np.linalg.norm(q)
        for hit in hits:
            i = int(hit.node_id[1:])
            rows = np.flatnonzero(corpus.chunk_node == i)
            sims = corpus.chunks[rows] @ unit_q
            assert hit.chunk.vector_name == "content"
            assert hit.chunk.chunk_index == int(np.argmax(sims))
            assert hit.chunk.span_start == hit.chunk.chunk_index * 100
            assert hit.score == pytest.approx(float(sims.max()), abs=1e-5)
            assert hit.target_scores == {"content": pytest.approx(hit.score)}
    assert np.mean(recalls) >= 0.9


@pytest.mark.parametrize("exact_threshold", [EXACT_THRESHOLD, 0])
async def test_several_targets_score_the_weighted_mean_with_a_missing_vector_as_zero(
    conn: asyncpg.Connection, corpus: Corpus, exact_threshold: int
) -> None:
    targets = (VectorTarget("content", 2.0), VectorTarget("title", 1.0))
    weights = {"content": 2.0, "title": 1.0}
    for q in _queries(corpus, 3, seed=11):
        hits = await _dense(
            conn, corpus, q, ONE_PERCENT, 10, exact_threshold=exact_threshold, targets=targets
        )
        exact = _exact_top(corpus, q, lambda i: i % 100 == 0, 10, weights)
        assert len(hits) == 10
        if exact_threshold:
            assert [h.node_id for h in hits] == [n for n, _ in exact]
            assert [h.score for h in hits] == pytest.approx([s for _, s in exact], abs=1e-5)
        for hit in hits:
            parts = hit.target_scores
            assert set(parts) == {"content", "title"}  # every one_pct node is even: has a title
            assert hit.score == pytest.approx((2 * parts["content"] + parts["title"]) / 3)
    # Odd nodes have no title vector: their title part counts as 0.
    q = corpus.chunks[np.flatnonzero(corpus.chunk_node == 1)[0]]
    hits = await _dense(conn, corpus, q, Filter(ids=("n00001",)), 5, targets=targets)
    assert [h.node_id for h in hits] == ["n00001"]
    assert hits[0].target_scores == {"content": pytest.approx(1.0, abs=1e-5)}
    assert hits[0].score == pytest.approx(2 / 3, abs=1e-5)


async def test_another_tenants_vectors_never_appear(
    conn: asyncpg.Connection, corpus: Corpus
) -> None:
    q = corpus.chunks[0]
    hits = await _dense(conn, corpus, q, ONE_PERCENT, 10, tenant="")
    other = await _dense(conn, corpus, q, Filter(), 100, tenant="other")
    assert hits[0].node_id == "n00000"
    assert len(other) == 50  # the other tenant sees only its own 50 vectors
    ours = await _dense(conn, corpus, q, Filter(), 100, exact_threshold=0)
    assert len(ours) == 100


async def test_bad_dense_requests_are_invalid_arguments(
    conn: asyncpg.Connection, corpus: Corpus
) -> None:
    q = corpus.chunks[0]
    with pytest.raises(InvalidArgument) as wrong_dim:
        await _dense(conn, corpus, np.ones(DIM + 1, dtype=np.float32), Filter(), 10)
    assert wrong_dim.value.field == "vector"
    with pytest.raises(InvalidArgument):
        await _dense(conn, corpus, np.zeros(DIM, dtype=np.float32), Filter(), 10)
    with pytest.raises(InvalidArgument) as twice:
        await _dense(conn, corpus, q, Filter(), 10, targets=(VectorTarget(), VectorTarget()))
    assert twice.value.field == "targets[1].name"
    with pytest.raises(InvalidArgument):
        await _dense(conn, corpus, q, Filter(), 10, targets=(VectorTarget("content", 0.0),))
    assert await _dense(conn, corpus, q, Filter(), 10, targets=(VectorTarget("nope"),)) == []


# --- the connection the search pool hands out: settings at start-up, one statement ----------


@pytest_asyncio.fixture
async def tuned(corpus: Corpus) -> AsyncIterator[tuple[asyncpg.Connection, list[str]]]:
    """A connection configured as ``db.create_pool`` does, and the statements it runs."""
    connection = await asyncpg.connect(corpus.url, server_settings=session_settings(EF_SEARCH))
    await register_vector(connection)
    statements: list[str] = []
    connection.add_query_logger(lambda record: statements.append(record.query))
    try:
        yield connection, statements
    finally:
        await connection.close()


async def _logged(statements: list[str]) -> int:
    """How many statements ran (asyncpg calls query loggers from the event loop)."""
    for _ in range(3):
        await asyncio.sleep(0)
    return len(statements)


async def test_an_unfiltered_search_on_a_tuned_connection_is_one_statement_with_its_nodes(
    conn: asyncpg.Connection, tuned: tuple[asyncpg.Connection, list[str]], corpus: Corpus
) -> None:
    fast, statements = tuned
    for q in _queries(corpus, 3, seed=5):
        await _logged(statements)
        statements.clear()
        hits = await _dense(fast, corpus, q, Filter(), 10, filtered=False, attach_after=0)
        assert await _logged(statements) == 1
        assert len(hits) == 10
        for hit in hits:
            assert hit.node is not None
            assert hit.node.id == hit.node_id
            assert hit.node.content_type == _content_type(int(hit.node_id[1:]))
        # The same answer as on an untuned connection (which tunes it per transaction).
        slow = await _dense(conn, corpus, q, Filter(), 10)
        assert [h.node_id for h in slow] == [h.node_id for h in hits]
        assert [h.score for h in slow] == pytest.approx([h.score for h in hits])


async def test_nodes_are_attached_only_after_the_offset(
    tuned: tuple[asyncpg.Connection, list[str]], corpus: Corpus
) -> None:
    fast, _ = tuned
    q = _queries(corpus, 1, seed=6)[0]
    for flt, threshold in ((Filter(), EXACT_THRESHOLD), (ONE_PERCENT, EXACT_THRESHOLD)):
        hits = await _dense(fast, corpus, q, flt, 15, exact_threshold=threshold, attach_after=5)
        assert [h.node is None for h in hits] == [True] * 5 + [False] * 10
        bare = await _dense(fast, corpus, q, flt, 15, exact_threshold=threshold)
        assert [h.node_id for h in bare] == [h.node_id for h in hits]
        assert all(h.node is None for h in bare)


async def test_a_filter_is_counted_in_the_same_statement_as_the_index_scan(
    tuned: tuple[asyncpg.Connection, list[str]], corpus: Corpus
) -> None:
    fast, statements = tuned
    q = _queries(corpus, 1, seed=8)[0]
    # 30 % of the nodes match: counted past the threshold, then scanned, in one statement.
    await _logged(statements)
    statements.clear()
    hits = await _dense(fast, corpus, q, THIRTY_PERCENT, 10)
    assert await _logged(statements) == 1
    assert len(hits) == 10
    assert all(int(h.node_id[1:]) % 10 in (1, 2, 3) for h in hits)
    # 1 % match (200 <= 1000): the count says exact, a second statement scores them.
    await _dense(fast, corpus, q, ONE_PERCENT, 10)  # asyncpg learns the exact path's types
    await _logged(statements)
    statements.clear()
    hits = await _dense(fast, corpus, q, ONE_PERCENT, 10)
    assert await _logged(statements) == 2
    exact = _exact_top(corpus, q, lambda i: _content_type(i) == "one_pct", 10)
    assert [h.node_id for h in hits] == [node for node, _ in exact]


async def test_a_connection_without_the_settings_gets_them_for_the_search_only(
    conn: asyncpg.Connection, corpus: Corpus
) -> None:
    await conn.execute("SELECT '[1]'::vector")  # pgvector loaded: its settings are defined
    before = await conn.fetchval("SELECT current_setting('hnsw.ef_search')")
    q = _queries(corpus, 1, seed=9)[0]
    assert len(await _dense(conn, corpus, q, Filter(), 10, filtered=False)) == 10
    assert await conn.fetchval("SELECT current_setting('hnsw.ef_search')") == before


async def _unfiltered(
    conn: asyncpg.Connection, corpus: Corpus, q: np.ndarray[Any, Any], ef: int
) -> list[DenseHit]:
    """The 10 nearest nodes to ``q`` for the tenant alone, at ``ef_search`` ``ef``."""
    sql, params = compile_filter("", Filter())
    return await dense_search(
        conn,
        corpus.table,
        "",
        q,
        targets=(VectorTarget(),),
        filter_sql=sql,
        filter_params=params,
        limit=10,
        ef_search=ef,
        exact_threshold=EXACT_THRESHOLD,
        filtered=False,
    )


async def test_a_pool_connection_takes_a_wider_ef_search_for_its_session(
    tuned: tuple[asyncpg.Connection, list[str]], corpus: Corpus
) -> None:
    fast, statements = tuned
    q = _queries(corpus, 1, seed=10)[0]

    async def search(ef: int) -> list[DenseHit]:
        return await _unfiltered(fast, corpus, q, ef)

    narrow = await search(EF_SEARCH)
    await _logged(statements)
    statements.clear()
    wide = await search(EF_SEARCH * 3)
    # Read back, set for the session (not in a transaction), run again.
    assert await _logged(statements) == 3
    assert not any("set_config('plan_cache_mode'" in s for s in statements)
    assert await fast.fetchval("SELECT current_setting('hnsw.ef_search')") == str(EF_SEARCH * 3)
    await _logged(statements)
    statements.clear()
    assert [h.node_id for h in await search(EF_SEARCH * 3)] == [h.node_id for h in wide]
    assert await _logged(statements) == 1
    # Back to the narrower value: the same answer as before, the session follows.
    assert [h.node_id for h in await search(EF_SEARCH)] == [h.node_id for h in narrow]
    assert await fast.fetchval("SELECT current_setting('hnsw.ef_search')") == str(EF_SEARCH)


async def test_a_pool_connection_reset_to_its_start_up_ef_search_is_set_before_the_search(
    corpus: Corpus,
) -> None:
    """A wider ef_search (a grown table) taken for a pool connection's session is undone
    when a lease that is not read-only resets the session (RESET ALL). The connection
    remembers which value its session has, so the next search sets the wider one first:
    two round trips, not a search thrown away after reading back the narrower value."""
    pool = await create_pool(
        corpus.url, min_size=1, max_size=1, session_settings=session_settings(EF_SEARCH)
    )
    reads = ReadConnections(pool)
    q = _queries(corpus, 1, seed=12)[0]

    async def search(ef: int) -> tuple[list[str], list[str]]:
        statements: list[str] = []
        async with reads.reading() as conn:
            conn.add_query_logger(lambda record: statements.append(record.query))
            hits = await _unfiltered(conn, corpus, q, ef)
            await _logged(statements)
            setting = await conn.fetchval("SELECT current_setting('hnsw.ef_search')")
        return [h.node_id for h in hits], [*statements, f"ef={setting}"]

    def kinds(statements: list[str]) -> list[str]:
        return [
            "set" if "set_config('hnsw.ef_search'" in s else "search" if "chunk" in s else s
            for s in statements
            if s != "SELECT current_setting('hnsw.ef_search')"
        ]

    try:
        narrow, _ = await search(EF_SEARCH)
        wide, ran = await search(EF_SEARCH * 3)
        assert kinds(ran) == ["set", "search", f"ef={EF_SEARCH * 3}"]
        assert kinds((await search(EF_SEARCH * 3))[1]) == ["search", f"ef={EF_SEARCH * 3}"]
        async with connection(pool) as conn:  # a lease that is not read-only: reset after
            await conn.execute("SELECT 1")
        again, ran = await search(EF_SEARCH * 3)
        assert again == wide
        assert kinds(ran) == ["set", "search", f"ef={EF_SEARCH * 3}"]
        # A record gone stale (the session changed behind the pool's back) costs a round
        # trip, not the answer: the statement reads back what it ran with.
        async with reads.reading() as conn:
            await conn.execute("SET hnsw.ef_search = 7")
        again, ran = await search(EF_SEARCH * 3)
        assert again == wide
        assert kinds(ran) == ["search", "set", "search", f"ef={EF_SEARCH * 3}"]
        assert (await search(EF_SEARCH))[0] == narrow
    finally:
        await pool.close()


async def test_table_sizes_follow_analyze_and_grow_ef_search(
    conn: asyncpg.Connection, corpus: Corpus
) -> None:
    now = [0.0]
    sizes = TableSizes(refresh_s=10, timer=lambda: now[0])
    await conn.execute(f"ANALYZE {corpus.table}")
    rows = await sizes.rows(conn, corpus.table)
    assert rows == await conn.fetchval(f"SELECT count(*) FROM {corpus.table}")
    assert await sizes.rows(conn, "semantic.vectors_999999") == 0  # no such table
    await conn.execute("CREATE TEMP TABLE probe AS SELECT x FROM generate_series(1, 10) AS x")
    await conn.execute("ANALYZE probe")
    assert await sizes.rows(conn, "probe") == 10
    await conn.execute("INSERT INTO probe SELECT x FROM generate_series(11, 100) AS x")
    await conn.execute("ANALYZE probe")
    now[0] = 9.0  # within the refresh period: the value known is kept
    assert await sizes.rows(conn, "probe") == 10
    now[0] = 10.5
    assert await sizes.rows(conn, "probe") == 100
    assert grown_ef_search(150, rows, 0.35) == 150  # small tables keep the setting
    assert grown_ef_search(150, 1_000_000, 0.35) == 336
    assert grown_ef_search(150, 1_000_000, 0.0) == 150
    assert grown_ef_search(900, 10**9, 1.0) == 1000  # capped


async def test_an_unfiltered_search_of_a_small_tenant_falls_back_to_exact(
    tuned: tuple[asyncpg.Connection, list[str]], corpus: Corpus
) -> None:
    fast, _ = tuned
    hits = await _dense(
        fast, corpus, corpus.chunks[3], Filter(), 100, tenant="other", filtered=False
    )
    assert sorted(h.node_id for h in hits) == sorted(_node_id(j) for j in range(50))
    assert hits[0].node_id == _node_id(3)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@pytest.mark.parametrize("k", [10, 50])
async def test_the_first_fetch_follows_the_chunks_per_node_seen_without_changing_answers(
    conn: asyncpg.Connection, corpus: Corpus, k: int
) -> None:
    key = (corpus.table, "content")
    queries = _queries(corpus, 6, seed=11)
    answers = {}
    for guess in (0.01, 3.0):  # far too few rows asked first (the fetch grows), too many
        got = []
        for q in queries:
            dense._rows_per_node[key] = guess
            got.append(
                [(h.node_id, round(h.score, 5)) for h in await _dense(conn, corpus, q, Filter(), k)]
            )
        answers[guess] = got
    assert answers[0.01] == answers[3.0]
    assert all(len(hits) == k for hits in answers[0.01])
    for q in _queries(corpus, 30, seed=12):  # the estimate settles on what scans see
        await _dense(conn, corpus, q, Filter(), k)
    per_node = len(corpus.chunk_node) / N_NODES
    assert dense._rows_per_node[key] == pytest.approx(per_node, abs=0.35)
