"""Half-precision HNSW indexes on real PostgreSQL + pgvector: a space of index precision
``half`` (its index on ``embedding::halfvec(dim)``) finds the same nearest nodes as a float32
space over the same vectors, with exact scores, through an index that is smaller and that
dense search really uses; filters still hold. The setting picks the precision of the space
the search service creates, and reindexing at another precision builds a new space."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import numpy as np
import pytest
import pytest_asyncio
from db_kit import fresh_database
from indexer_kit import running_search, search_env
from pgvector.asyncpg import register_vector

from semantic.core.domain import Filter, VectorTarget
from semantic.core.spaces import Space
from semantic.store.postgres import candidate_rows, spaces
from semantic.store.postgres.db import init_connection, session_settings
from semantic.store.postgres.dense import DenseHit, dense_search, explain_index_scan
from semantic.store.postgres.filters import compile_filter
from semantic.store.postgres.schema import bootstrap_schema
from semantic.tools.cli.main import main
from semantic.tools.devstack import EmbeddedPostgres
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

N_NODES = 4000
DIM = 384
EF_SEARCH = 100
EXACT_THRESHOLD = 100
QUERIES = 40


@dataclass
class Corpus:
    """Both spaces over the same vectors, and what exact answers need."""

    url: str
    full: Space
    half: Space
    vectors: np.ndarray[Any, Any]  # unit vectors, row i = node n{i}


def _node_id(i: int) -> str:
    return f"n{i:05d}"


def _content_type(i: int) -> str:
    return "rare" if i % 100 == 0 else "doc"  # 40 rare nodes: fewer than EXACT_THRESHOLD


def _tagged(i: int) -> bool:
    return i % 10 in (1, 2, 3)  # 30 %: the index path with a filter


def _clustered(rng: np.random.Generator, n: int) -> np.ndarray[Any, Any]:
    centres = rng.normal(size=(30, DIM))
    bases = rng.normal(size=(30, DIM, 6))
    cluster = rng.integers(0, 30, size=n)
    spread = np.einsum("nij,nj->ni", bases[cluster], rng.normal(size=(n, 6))) * 0.6
    points = centres[cluster] + spread + 0.1 * rng.normal(size=(n, DIM))
    unit: np.ndarray[Any, Any] = points / np.linalg.norm(points, axis=1, keepdims=True)
    return unit.astype(np.float32)


async def _drop_hnsw(conn: asyncpg.Connection, space: Space) -> None:
    await conn.execute(f"DROP INDEX IF EXISTS semantic.vectors_{space.id}_hnsw")


@pytest_asyncio.fixture(scope="module")
async def corpus(pg_server: EmbeddedPostgres) -> AsyncIterator[Corpus]:
    name = f"t_{uuid.uuid4().hex}"
    pg_server.create_database(name)
    try:
        url = pg_server.url(name)
        await bootstrap_schema(url)
        conn = await asyncpg.connect(url)
        try:
            yield await _load(conn, url)
        finally:
            await conn.close()
    finally:
        pg_server.drop_database(name)


async def _load(conn: asyncpg.Connection, url: str) -> Corpus:
    await init_connection(conn)
    full = await spaces.ensure_space(conn, model_id="test", model_sha256="0" * 64, dim=DIM)
    half, _ = await spaces.reindex_space(
        conn,
        model_id="test",
        model_sha256="0" * 64,
        dim=DIM,
        build={},
        index_precision="half",
    )
    vectors = _clustered(np.random.default_rng(4000), N_NODES)
    await conn.copy_records_to_table(
        "nodes",
        schema_name="semantic",
        columns=["tenant", "id", "content_type", "tags", "content_hash"],
        records=[
            ("", _node_id(i), _content_type(i), ["thirty"] if _tagged(i) else [], "")
            for i in range(N_NODES)
        ],
    )
    for space in (full, half):  # loaded first, indexed after (as a bulk import does)
        await _drop_hnsw(conn, space)
        await conn.copy_records_to_table(
            space.table.split(".")[1],
            schema_name="semantic",
            columns=["tenant", "node_id", "name", "chunk", "content_hash", "embedding"],
            records=[("", _node_id(i), "content", 0, "", vectors[i]) for i in range(N_NODES)],
        )
        await spaces.ensure_vector_table(conn, space)
    await conn.execute("ANALYZE")
    return Corpus(url, full, half, vectors)


@pytest_asyncio.fixture
async def conn(corpus: Corpus) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(corpus.url, server_settings=session_settings(EF_SEARCH))
    await register_vector(connection)
    try:
        yield connection
    finally:
        await connection.close()


def _queries(corpus: Corpus, seed: int) -> list[np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, N_NODES, size=QUERIES)
    noise = rng.normal(size=(QUERIES, DIM)) * 0.3 / np.sqrt(DIM)
    return [(corpus.vectors[p] + noise[j]).astype(np.float32) for j, p in enumerate(picks)]


def _exact(
    corpus: Corpus, q: np.ndarray[Any, Any], k: int, allowed: Callable[[int], bool] | None = None
) -> list[str]:
    scores = corpus.vectors @ (q / np.linalg.norm(q))
    if allowed is not None:
        scores[[not allowed(i) for i in range(N_NODES)]] = -np.inf
    return [_node_id(int(i)) for i in np.argsort(-scores, kind="stable")[:k]]


async def _dense(
    conn: asyncpg.Connection, space: Space, q: np.ndarray[Any, Any], flt: Filter, k: int = 10
) -> list[DenseHit]:
    sql, params = compile_filter("", flt)
    return await dense_search(
        conn,
        space.table,
        "",
        q,
        targets=(VectorTarget(),),
        filter_sql=sql,
        filter_params=params,
        limit=k,
        ef_search=EF_SEARCH,
        exact_threshold=EXACT_THRESHOLD,
        filtered=not flt.is_empty,
        halfvec_dim=spaces.halfvec_dim(space.index_precision, space.dim),
    )


def _overlap(a: list[str], b: list[str]) -> float:
    return len(set(a) & set(b)) / max(1, len(b))


async def test_half_space_finds_the_nearest_nodes_of_float32_with_exact_scores(
    corpus: Corpus, conn: asyncpg.Connection
) -> None:
    assert (corpus.full.index_precision, corpus.half.index_precision) == ("float32", "half")
    recall_half, recall_full, agreement = [], [], []
    for q in _queries(corpus, 1):
        exact = _exact(corpus, q, 10)
        half = await _dense(conn, corpus.half, q, Filter())
        full = await _dense(conn, corpus.full, q, Filter())
        ids_half, ids_full = [h.node_id for h in half], [h.node_id for h in full]
        recall_half.append(_overlap(ids_half, exact))
        recall_full.append(_overlap(ids_full, exact))
        agreement.append(_overlap(ids_half, ids_full))
        unit_q = q / np.linalg.norm(q)
        for hit in half:  # the score is the full-precision cosine, not the half one
            expected = float(corpus.vectors[int(hit.node_id[1:])] @ unit_q)
            assert hit.score == pytest.approx(expected, abs=1e-5)
        assert [h.score for h in half] == sorted((h.score for h in half), reverse=True)
    assert np.mean(recall_half) >= 0.95
    assert np.mean(recall_half) >= np.mean(recall_full) - 0.02
    assert np.mean(agreement) >= 0.95


async def test_half_index_is_smaller_and_is_the_one_dense_search_uses(
    corpus: Corpus, conn: asyncpg.Connection
) -> None:
    full_bytes, half_bytes = [
        await conn.fetchval(f"SELECT pg_relation_size('semantic.vectors_{s.id}_hnsw')")
        for s in (corpus.full, corpus.half)
    ]
    assert half_bytes < 0.7 * full_bytes
    q = _queries(corpus, 2)[0]

    async def plan(space: Space, flt: Filter, *, halfvec_dim: int | None) -> str:
        sql, params = compile_filter("", flt)
        lines = await explain_index_scan(
            conn,
            space.table,
            "",
            q,
            target=VectorTarget(),
            filter_sql=sql,
            filter_params=params,
            limit=10,
            filtered=not flt.is_empty,
            halfvec_dim=halfvec_dim,
        )
        return "\n".join(lines)

    for space in (corpus.full, corpus.half):
        dim = spaces.halfvec_dim(space.index_precision, space.dim)
        found = await plan(space, Filter(), halfvec_dim=dim)
        assert f"Index Scan using vectors_{space.id}_hnsw" in found, found
        # With a filter matching 30 % of 4,000 rows, sorting them is cheaper than the
        # index; with sequential scans priced out, the plan shows whether the statement
        # can reach the index at all (it does on a large table by cost).
        async with conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off")
            found = await plan(space, Filter(tags_any=("thirty",)), halfvec_dim=dim)
            assert f"Index Scan using vectors_{space.id}_hnsw" in found, found
            # Ordered by the column instead of the expression the half index is built on,
            # the statement cannot use it: every query must order by that expression.
            if space.index_precision == "half":
                found = await plan(space, Filter(), halfvec_dim=None)
                assert f"vectors_{space.id}_hnsw" not in found, found


async def test_filters_hold_on_a_half_space(corpus: Corpus, conn: asyncpg.Connection) -> None:
    cases: list[tuple[Filter, Callable[[int], bool]]] = [
        (Filter(tags_any=("thirty",)), _tagged),  # 30 %: the index scan, filtered
        (Filter(content_types=("rare",)), lambda i: _content_type(i) == "rare"),  # exact path
    ]
    for flt, allowed in cases:
        recalls = []
        for q in _queries(corpus, 3)[:20]:
            hits = await _dense(conn, corpus.half, q, flt)
            assert len(hits) == 10
            assert all(allowed(int(h.node_id[1:])) for h in hits)
            recalls.append(_overlap([h.node_id for h in hits], _exact(corpus, q, 10, allowed)))
        assert np.mean(recalls) >= 0.95, flt


async def test_recommendation_candidates_use_the_half_index_too(
    corpus: Corpus, conn: asyncpg.Connection
) -> None:
    q = _queries(corpus, 4)[0]
    exact = _exact(corpus, q, 21)
    found, details = await candidate_rows.nearest(
        conn,
        corpus.half.id,
        "",
        q,
        vector_name="content",
        flt=Filter(exclude_ids=(exact[0],)),
        limit=20,
        ef_search=EF_SEARCH,
        exact_threshold=EXACT_THRESHOLD,
        halfvec_dim=spaces.halfvec_dim(corpus.half.index_precision, corpus.half.dim),
    )
    assert details == {}  # no details were asked for
    assert exact[0] not in found
    assert _overlap(found, exact[1:]) >= 0.9


async def test_reindex_at_another_precision_builds_a_new_space(database_url: str) -> None:
    await bootstrap_schema(database_url)
    conn = await asyncpg.connect(database_url)
    await init_connection(conn)
    try:
        model = {"model_id": "m", "model_sha256": "1" * 64, "dim": 8}
        first = await spaces.ensure_space(conn, **model)
        assert first.index_precision == "float32"
        # An existing space keeps its precision whatever a process is configured with.
        again = await spaces.ensure_space(conn, **model, index_precision="half")
        assert (again.id, again.index_precision) == (first.id, "float32")
        same, created = await spaces.reindex_space(conn, **model, build={})
        assert (same.id, created) == (first.id, False)
        half, created = await spaces.reindex_space(conn, **model, build={}, index_precision="half")
        assert created
        assert (half.id != first.id, half.index_precision) == (True, "half")
        indexdef = await conn.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE indexname = $1", f"vectors_{half.id}_hnsw"
        )
        assert "((embedding)::halfvec(8)) halfvec_cosine_ops" in indexdef
        repeat, created = await spaces.reindex_space(
            conn, **model, build={}, index_precision="half"
        )
        assert (repeat.id, created) == (half.id, False)
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "UPDATE semantic.embedding_spaces SET index_precision = 'int8' WHERE id = $1",
                half.id,
            )
    finally:
        await conn.close()


# --- through the search service: the setting, Search and Nearest ----------------------------

DOCS = {
    "cache": ("Caching HTTP responses", "Use Cache-Control headers and ETags to cache responses."),
    "pasta": ("Fresh pasta at home", "Flour, eggs and a rolling pin make silky tagliatelle."),
    "tls": ("Renewing TLS certificates", "Automate certificate renewal with ACME before expiry."),
    "bread": ("Sourdough bread", "A starter, flour, water and salt; long fermentation."),
    "index": ("Database indexes", "B-tree indexes speed up lookups; HNSW indexes find vectors."),
}
QUESTIONS = ("how do I bake bread", "renew a certificate", "speed up a database query")


async def _answers(channel: Any, url: str) -> tuple[str, list[list[tuple[str, float]]], list[str]]:
    """The space's index precision, each question's hits, Nearest of `bread`."""
    stub = search_pb2_grpc.SearchStub(channel)
    nodes = [
        cpb.Node(id=k, slug=f"{k}-page", content_type="page", title=t, body=b)
        for k, (t, b) in DOCS.items()
    ]
    await stub.Upsert(pb.UpsertRequest(nodes=nodes))
    answers = []
    for text in QUESTIONS:
        reply = await stub.Search(pb.SearchRequest(text=text, mode=pb.SEARCH_MODE_DENSE, top_k=3))
        answers.append([(h.node.id, h.score) for h in reply.hits])
    nearest = await stub.Nearest(pb.NearestRequest(id="bread", top_k=4))
    conn = await asyncpg.connect(url)
    try:
        precision = await conn.fetchval(
            "SELECT s.index_precision FROM semantic.space_aliases a"
            " JOIN semantic.embedding_spaces s ON s.id = a.space_id WHERE a.name = 'active'"
        )
    finally:
        await conn.close()
    listed = await search_pb2_grpc.AdminStub(channel).ListSpaces(pb.ListSpacesRequest())
    shown = pb.IndexPrecision.Name(listed.spaces[0].index_precision)
    assert shown == f"INDEX_PRECISION_{str(precision).upper()}"
    return str(precision), answers, [h.node.id for h in nearest.hits]


async def _beyond_half_is_refused(channel: Any) -> None:
    """A vector a half index cannot hold is INVALID_ARGUMENT naming it, written or asked."""
    stub = search_pb2_grpc.SearchStub(channel)
    big = np.full(DIM, 1.0, dtype=np.float32)
    big[7] = 70_000.0
    packed = cpb.Vector(packed=big.astype("<f4").tobytes())
    node = cpb.Node(id="huge", content_type="page", title="huge", body="huge")
    node.vectors.append(cpb.NamedVector(name="custom", vector=packed))
    for call, field in (
        (
            stub.Upsert(
                pb.UpsertRequest(nodes=[cpb.Node(id="ok", content_type="page", title="t"), node])
            ),
            "nodes[1]",
        ),
        (stub.Search(pb.SearchRequest(vector=packed, mode=pb.SEARCH_MODE_DENSE)), "vector"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details().startswith(field)
        assert "half-precision" in caught.value.details()
    assert not (await stub.Get(pb.GetRequest(ids=["ok", "huge"]))).nodes  # nothing written
    fits = big.copy()
    fits[7] = 65_000.0
    reply = await stub.Search(
        pb.SearchRequest(vector=cpb.Vector(packed=fits.tobytes()), mode=pb.SEARCH_MODE_DENSE)
    )
    assert reply.hits


async def test_the_setting_makes_the_service_create_a_half_space_that_answers_the_same(
    pg_server: EmbeddedPostgres,
    database_url: str,
    embedder_address: str,
    fp32_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = search_env(database_url, embedder_address, fp32_model_dir)
    async with running_search(env, monkeypatch) as channel:
        full = await _answers(channel, database_url)
    for other_url in fresh_database(pg_server):
        env = {
            **search_env(other_url, embedder_address, fp32_model_dir),
            "SEMANTIC_VECTOR_INDEX_PRECISION": "half",
        }
        async with running_search(env, monkeypatch) as channel:
            half = await _answers(channel, other_url)
            await _beyond_half_is_refused(channel)
    assert (full[0], half[0]) == ("float32", "half")
    assert [[i for i, _ in hits] for hits in half[1]] == [[i for i, _ in hits] for hits in full[1]]
    for hits_half, hits_full in zip(half[1], full[1], strict=True):
        for (_, score_half), (_, score_full) in zip(hits_half, hits_full, strict=True):
            assert score_half == pytest.approx(score_full, abs=1e-5)  # exact scores both
    assert half[2] == full[2]
    assert half[1][0][0][0] == "bread"


async def test_switching_a_deployment_to_half_precision_is_one_reindex(
    database_url: str,
    embedder_address: str,
    fp32_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = search_env(database_url, embedder_address, fp32_model_dir)
    async with running_search(env, monkeypatch) as channel:
        full = await _answers(channel, database_url)
    env = {**env, "SEMANTIC_VECTOR_INDEX_PRECISION": "half"}
    async with running_search(env, monkeypatch) as channel:
        search = search_pb2_grpc.SearchStub(channel)
        admin = search_pb2_grpc.AdminStub(channel)
        before = await admin.ListSpaces(pb.ListSpacesRequest())
        # The existing space keeps its precision and keeps answering.
        assert [s.index_precision for s in before.spaces] == [pb.INDEX_PRECISION_FLOAT32]
        reply = await search.Search(pb.SearchRequest(text=QUESTIONS[0], top_k=3))
        assert reply.hits[0].node.id == "bread"

        # The operator's command (it waits for the build and the switch).
        address = f"127.0.0.1:{os.environ['SEMANTIC_GRPC_PORT']}"  # set by running_search
        monkeypatch.setenv("SEMANTIC_SEARCH_ADDRESS", address)
        model_id = before.spaces[0].model_id
        assert await asyncio.to_thread(main, ["reindex", "--model-id", model_id]) == 0

        after = await admin.ListSpaces(pb.ListSpacesRequest())
        new = next(s for s in after.spaces if s.id == after.active_space_id)
        assert new.id != before.active_space_id
        assert new.index_precision == pb.INDEX_PRECISION_HALF
        assert (new.nodes, new.model_id) == (len(DOCS), model_id)
        old = next(s for s in after.spaces if s.id == before.active_space_id)
        assert (old.state, old.index_precision) == (
            pb.SPACE_STATE_READY,
            pb.INDEX_PRECISION_FLOAT32,
        )
        for text, hits_full in zip(QUESTIONS, full[1], strict=True):
            reply = await search.Search(
                pb.SearchRequest(text=text, mode=pb.SEARCH_MODE_DENSE, top_k=3)
            )
            assert reply.space_id == new.id
            assert [h.node.id for h in reply.hits] == [i for i, _ in hits_full]
