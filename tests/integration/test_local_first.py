"""Local-first dense search: the search service takes a dense query's candidates from its
local vector index and PostgreSQL scores them, and every node its change log names since the
index's last sync, in one statement. Its answers are PostgreSQL's as they are at that
statement, whatever the index holds.

Two search services run in this process on one database: the reference, without a local
index (PostgreSQL's HNSW index scan or exact path answers), which also does every write, as
another replica or the indexer would; and the local-first one, whose index is built once at
its start and never synced again (a sync interval of an hour), so every write after that
reaches its answers only through the change log.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import numpy as np
import pytest
from indexer_kit import running_search, search_env, wait_for
from prometheus_client import REGISTRY

from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

NODES = 400
DIM = 384
CENTRES = 12
TYPES = ("page", "post", "note")
MAX_CHANGES = 40


def _outcome(name: str) -> float:
    return REGISTRY.get_sample_value("semantic_local_first_searches_total", {"outcome": name}) or 0


def _vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    """Embedding-like unit vectors: around a few centres, with noise."""
    centres = rng.normal(size=(CENTRES, DIM))
    own = centres[rng.integers(0, CENTRES, n)] + rng.normal(0, 0.8, (n, DIM))
    return (own / np.linalg.norm(own, axis=1, keepdims=True)).astype(np.float32)


def _node(i: int, vector: np.ndarray, *, title: str = "") -> cpb.Node:
    node = cpb.Node(
        id=f"n{i}",
        content_type=TYPES[i % 3],
        title=title or f"node {i}",
        tags=["even" if i % 2 == 0 else "odd", f"g{i % 5}"],
    )
    node.metadata.update({"rank": i % 7})
    node.vectors.append(
        cpb.NamedVector(name="content", vector=cpb.Vector(packed=vector.astype("<f4").tobytes()))
    )
    return node


def _rank_is(value: int) -> cpb.MetadataCondition:
    condition = cpb.MetadataCondition(key="rank")
    condition.equals.number_value = value
    return condition


def _query(vector: np.ndarray, **fields: object) -> pb.SearchRequest:
    return pb.SearchRequest(
        vector=cpb.Vector(packed=vector.astype("<f4").tobytes()),
        mode=pb.SEARCH_MODE_DENSE,
        **fields,  # type: ignore[arg-type]
    )


def _requests(vectors: np.ndarray, rng: np.random.Generator) -> Iterator[pb.SearchRequest]:
    """Queries near stored vectors, with every kind of filter the local index evaluates,
    pages and a floor on the score."""
    filters = [
        cpb.Filter(),
        cpb.Filter(content_types=["post"]),
        cpb.Filter(tags_any=["g1", "g2"], tags_none=["odd"]),
        cpb.Filter(tags_all=["even", "g4"]),
        cpb.Filter(ids=[f"n{i}" for i in range(0, NODES, 9)]),
        cpb.Filter(exclude_ids=[f"n{i}" for i in range(0, NODES, 2)]),
    ]
    for k in range(24):
        moved = vectors[(k * 37) % len(vectors)] + rng.normal(0, 0.05, DIM).astype(np.float32)
        yield _query(moved, top_k=10, filter=filters[k % len(filters)])
        if k % 4 == 0:
            yield _query(moved, top_k=5, offset=5)
            yield _query(moved, top_k=20, min_score=0.3)


TOLERANCE = 5e-5
"""Scores from the index's copy of a vector and from PostgreSQL's differ in float rounding."""


def _alike(got: pb.SearchResponse, want: pb.SearchResponse) -> str:
    """What differs between two answers beyond float rounding: a node's score or fields, the
    order, or a node only one of them has that is not tied with the other's last hit."""
    mine = {h.node.id: h for h in got.hits}
    theirs = {h.node.id: h for h in want.hits}
    if len(mine) != len(theirs):
        return f"{len(mine)} hits against {len(theirs)}"
    scores = [h.score for h in got.hits]
    if any(b > a + TOLERANCE for a, b in itertools.pairwise(scores)):
        return f"out of order: {scores}"
    for node_id in mine.keys() & theirs.keys():
        a, b = mine[node_id], theirs[node_id]
        chunks = (
            (a.chunk.vector_name, a.chunk.chunk_index),
            (b.chunk.vector_name, b.chunk.chunk_index),
        )
        if abs(a.score - b.score) > TOLERANCE or a.node != b.node or chunks[0] != chunks[1]:
            return f"{node_id}: {a.score} {a.node.title!r} against {b.score} {b.node.title!r}"
    last = want.hits[-1].score if want.hits else 0.0
    for node_id in mine.keys() ^ theirs.keys():
        hit = mine.get(node_id) or theirs[node_id]
        if abs(hit.score - last) > 2 * TOLERANCE:
            return f"{node_id} ({hit.score}) in one answer only"
    return ""


async def test_local_first_answers_as_postgresql_and_sees_every_write_at_once(
    database_url: str,
    embedder_address: str,
    fp32_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = search_env(database_url, embedder_address, fp32_model_dir)
    rng = np.random.default_rng(5)
    vectors = _vectors(rng, NODES)
    # The reference's HNSW scans visit every node of so small a graph: exact, as the local
    # index searches a small graph.
    exact = {**base, "SEMANTIC_SEARCH_LOCAL_INDEX": "false", "SEMANTIC_SEARCH_EF_SEARCH": "1000"}
    async with running_search(exact, monkeypatch) as c:
        reference = search_pb2_grpc.SearchStub(c)
        for start in range(0, NODES, 100):
            batch = [_node(i, vectors[i]) for i in range(start, start + 100)]
            await reference.Upsert(pb.UpsertRequest(nodes=batch), timeout=60)
        local_env = {
            **base,
            "SEMANTIC_SEARCH_LOCAL_INDEX": "true",
            "SEMANTIC_SEARCH_EF_SEARCH": "200",
            "SEMANTIC_SEARCH_LOCAL_INDEX_DIR": str(tmp_path / "local-index"),
            "SEMANTIC_SEARCH_LOCAL_INDEX_SYNC_S": "3600",
            "SEMANTIC_SEARCH_LOCAL_FIRST_MAX_CHANGES": str(MAX_CHANGES),
        }
        async with running_search(local_env, monkeypatch) as channel:
            local = search_pb2_grpc.SearchStub(channel)
            admin = search_pb2_grpc.AdminStub(channel)

            async def built() -> bool:
                report = await admin.HealthReport(pb.HealthReportRequest(), timeout=20)
                index = next(x for x in report.components if x.name == "local_index")
                return (
                    index.status == pb.COMPONENT_STATUS_OK and f"; {NODES} nodes;" in index.detail
                )

            await wait_for(built, timeout_s=120, what="the local index built")

            async def compare(requests: list[pb.SearchRequest], outcome: str) -> None:
                """Every request answered alike by both services, each by ``outcome``."""
                before = _outcome(outcome)
                for request in requests:
                    got = await local.Search(request, timeout=20)
                    want = await reference.Search(request, timeout=20)
                    assert not _alike(got, want), (_alike(got, want), request)
                    assert not got.degraded
                assert _outcome(outcome) - before == len(requests)

            requests = list(_requests(vectors, rng))
            await compare(requests, "answered")
            for request in requests[:6]:  # not empty answers alike
                assert (await local.Search(request)).hits
            # Nearest: the node's vector from PostgreSQL, its neighbours local-first.
            before = _outcome("answered")
            for i in range(0, 60, 6):
                near = pb.NearestRequest(id=f"n{i}", top_k=8)
                got_near = await local.Nearest(near, timeout=20)
                want_near = await reference.Nearest(near, timeout=20)
                as_search = pb.SearchResponse(hits=got_near.hits)
                assert not _alike(as_search, pb.SearchResponse(hits=want_near.hits)), i
                assert f"n{i}" not in [h.node.id for h in got_near.hits]
            assert _outcome("answered") - before == 10
            # Concurrent searches (beyond SEMANTIC_SEARCH_LOCAL_FIRST_MAX_BUSY the index scan
            # answers): the same answers whichever path took each.
            replies = await asyncio.gather(*(local.Search(r, timeout=20) for r in requests))
            for request, got in zip(requests, replies, strict=True):
                want = await reference.Search(request, timeout=20)
                assert not _alike(got, want), (_alike(got, want), request)

            # Writes after the index's only sync: a new node, a node moved far away, a node
            # retitled, a node deleted. Each shows at once, scored and shown as it is now.
            probe = vectors[3]
            far = -probe
            await reference.Upsert(
                pb.UpsertRequest(
                    nodes=[
                        _node(NODES, probe, title="newcomer"),
                        _node(3, far, title="moved away"),
                        _node(6, vectors[6], title="retitled"),
                    ]
                )
            )
            await reference.Delete(pb.DeleteRequest(ids=["n9"]))
            at_once = [
                _query(probe, top_k=10),
                _query(vectors[6], top_k=10),
                _query(vectors[9], top_k=10),
                _query(far, top_k=3),
            ]
            await compare(at_once, "answered")
            hits = (await local.Search(at_once[0])).hits
            assert hits[0].node.id == f"n{NODES}"
            assert hits[0].node.title == "newcomer"
            assert "n3" not in [h.node.id for h in hits]
            assert (await local.Search(at_once[1])).hits[0].node.title == "retitled"
            assert "n9" not in [h.node.id for h in (await local.Search(at_once[2])).hits]
            assert (await local.Search(at_once[3])).hits[0].node.id == "n3"

            # A filter the index cannot evaluate: the index scan answers.
            by_metadata = _query(probe, top_k=10, filter=cpb.Filter(metadata=[_rank_is(3)]))
            await compare([by_metadata], "unsupported")

            # More changes since the sync than the log may name: the index scan answers,
            # and still sees them all.
            more = _vectors(rng, MAX_CHANGES)
            await reference.Upsert(
                pb.UpsertRequest(nodes=[_node(NODES + 1 + i, v) for i, v in enumerate(more)]),
                timeout=60,
            )
            await compare([_query(more[0], top_k=10), _query(probe, top_k=10)], "changes")

            # Emptied behind the index's back: nothing comes back, never the index's nodes.
            conn = await asyncpg.connect(database_url)
            try:
                await conn.execute("TRUNCATE semantic.nodes CASCADE")
            finally:
                await conn.close()
            for request in requests[:6]:
                assert not (await local.Search(request, timeout=20)).hits
