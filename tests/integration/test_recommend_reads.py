"""Recommend's combined reads on PostgreSQL give what the separate reads give: the details
read beside the nearest-node index scan (``dense.Beside``) and with the popular nodes are
those of ``details`` for the same nodes, for every kind of details asked; a search that
goes exact gives none beside, and the user's one read carries the conflicts and, for a
user without an archetype, the centroids."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from indexer_kit import running_search, search_env
from recommend_kit import TOPICS, topic_nodes

from semantic.core.domain import DEFAULT_VECTOR, Filter
from semantic.core.recommend.journey import Journey
from semantic.core.recommend.values import CandidateDetails, Wanted
from semantic.core.spaces import Space, vector_table
from semantic.store.postgres import dense
from semantic.store.postgres.db import as_array, create_pool, session_settings
from semantic.store.postgres.recommend_reads import RecommendReads, RecommendSession
from semantic.store.postgres.spaces import PostgresSpaces
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import events_pb2 as epb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

_LONG_BREAD = cpb.Node(
    id="breadlong",
    slug="bread-long",
    content_type="page",
    title="Baking bread at home",
    body=" ".join(TOPICS["bread"] * 8),  # more word-pieces than one chunk holds
)
"""A node of several chunks: its similarity is that of the mean of their vectors."""


@pytest.fixture
async def reads(
    database_url: str, embedder_address: str, fp32_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[RecommendReads, Space]]:
    env = search_env(database_url, embedder_address, fp32_model_dir)
    async with running_search(env, monkeypatch) as channel:
        search = search_pb2_grpc.SearchStub(channel)
        nodes = [*topic_nodes(), _LONG_BREAD]
        nodes[1].relations.CopyFrom(
            cpb.Relations(items=[cpb.Relation(node_id="tls1", type="conflicts")])
        )
        await search.Upsert(pb.UpsertRequest(nodes=nodes))
        events = [
            epb.UserEvent(event_id=f"e{i}", user_id="u1", node_id=node, action=action)
            for i, (node, action) in enumerate(
                [
                    ("bread0", epb.USER_ACTION_VIEW),
                    ("bread1", epb.USER_ACTION_CONVERT),
                    ("bread2", epb.USER_ACTION_CLICK),
                    ("garden0", epb.USER_ACTION_VIEW),
                ]
            )
        ]
        await search.Track(pb.TrackRequest(events=events))
        pool = await create_pool(
            database_url, min_size=1, max_size=2, session_settings=session_settings(150)
        )
        try:
            space = await PostgresSpaces(pool).active()
            yield RecommendReads(pool, ef_search=150, exact_threshold=0), space
        finally:
            await pool.close()


def _same(got: dict[str, CandidateDetails], want: dict[str, CandidateDetails]) -> None:
    assert got.keys() == want.keys()
    for node_id, detail in got.items():
        other = want[node_id]
        assert detail.node == other.node
        assert detail.counts == other.counts
        assert detail.archetype_score == other.archetype_score
        assert detail.partial == other.partial
        if other.similarity is None:
            assert detail.similarity is None
        else:
            assert detail.similarity == pytest.approx(other.similarity, abs=1e-12)
        if other.vector is None:
            assert detail.vector is None
        else:
            assert detail.vector is not None
            np.testing.assert_array_equal(detail.vector, other.vector)


async def _journey(session: RecommendSession, space: Space) -> np.ndarray:
    read = await session.user("", "u1", exclude_seen=False, include_converted=True)
    assert read.row is not None
    vector = Journey.stored(read.row, space.id).vector()
    assert vector is not None
    return vector


@pytest.mark.parametrize("kind", ["slim_similarity", "slim", "full"])
async def test_details_read_beside_the_scan_are_those_read_apart(
    reads: tuple[RecommendReads, Space], kind: str
) -> None:
    pool_reads, space = reads
    async with pool_reads.session() as session:
        journey = await _journey(session, space)
        wanted = Wanted(
            DEFAULT_VECTOR,
            "",
            slim=kind != "full",
            similarity_to=journey if kind == "slim_similarity" else None,
        )
        flt = Filter(exclude_ids=("bread0",))
        ids, beside = await session.nearest(
            space,
            "",
            journey,
            vector_name=DEFAULT_VECTOR,
            flt=flt,
            limit=8,
            wanted=wanted,
        )
        assert len(ids) == 8
        assert "bread0" not in ids
        assert set(beside) == set(ids)  # the index answered: every node's details came with it
        assert "breadlong" in ids
        _same(beside, await session.details(space, "", ids, wanted))

        plain, none = await session.nearest(
            space,
            "",
            journey,
            vector_name=DEFAULT_VECTOR,
            flt=flt,
            limit=8,
        )
        assert plain == ids
        assert none == {}

        nodes, _, popular = await session.popular(space, "", Filter(), 5, wanted)
        assert nodes  # the tracked nodes are popular
        _same(popular, await session.details(space, "", [n for n, _ in nodes], wanted))


async def test_a_search_that_goes_exact_gives_no_details_beside(
    reads: tuple[RecommendReads, Space],
) -> None:
    """With a filter matching fewer nodes than the exact threshold the search is exact:
    nothing comes beside, the caller reads the details apart."""
    pool_reads, space = reads
    exact = RecommendReads(pool_reads._pool, ef_search=150, exact_threshold=1000)
    async with exact.session() as session:
        journey = await _journey(session, space)
        wanted = Wanted(DEFAULT_VECTOR, "", slim=True, similarity_to=journey)
        ids, beside = await session.nearest(
            space,
            "",
            journey,
            vector_name=DEFAULT_VECTOR,
            flt=Filter(content_types=("page",)),
            limit=4,
            wanted=wanted,
        )
        assert ids
        assert beside == {}


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


async def test_beside_the_scan_a_node_of_several_chunks_is_compared_by_their_mean(
    reads: tuple[RecommendReads, Space],
) -> None:
    """Beside the scan for the journey itself a node of one chunk takes that chunk's
    distance from the scan; a node of several is still compared by their mean."""
    pool_reads, space = reads
    async with pool_reads.session() as session:
        journey = await _journey(session, space)
        wanted = Wanted(DEFAULT_VECTOR, "", slim=True, similarity_to=journey)
        ids, beside = await session.nearest(
            space, "", journey, vector_name=DEFAULT_VECTOR, flt=Filter(), limit=8, wanted=wanted
        )
    async with pool_reads._pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT node_id, embedding FROM {vector_table(space.id)}"
            " WHERE tenant = '' AND name = $1 ORDER BY node_id, chunk",
            DEFAULT_VECTOR,
        )
    chunks: dict[str, list[np.ndarray]] = {}
    for row in rows:
        chunks.setdefault(row["node_id"], []).append(as_array(row["embedding"]))
    assert len(chunks["breadlong"]) >= 2
    assert set(ids) <= set(chunks)
    for node_id in ids:
        vectors = chunks[node_id]
        mean = _cosine(np.mean(vectors, axis=0), journey)
        assert beside[node_id].similarity == pytest.approx(mean, abs=1e-6), node_id
    long = chunks["breadlong"]
    best = max(_cosine(v, journey) for v in long)
    assert abs(best - _cosine(np.mean(long, axis=0), journey)) > 1e-4  # the best chunk differs


async def test_an_archetypes_prior_comes_beside_the_scan_and_none_without_one(
    reads: tuple[RecommendReads, Space],
) -> None:
    pool_reads, space = reads
    async with pool_reads._pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO semantic.archetype_engagement (tenant, archetype, node_id, score)"
            " VALUES ('', 'bakers', 'bread3', 2.5)"
        )
    async with pool_reads.session() as session:
        journey = await _journey(session, space)
        scores = {}
        for archetype in ("bakers", ""):
            wanted = Wanted(DEFAULT_VECTOR, archetype, slim=True, similarity_to=journey)
            ids, beside = await session.nearest(
                space, "", journey, vector_name=DEFAULT_VECTOR, flt=Filter(), limit=8, wanted=wanted
            )
            assert "bread3" in ids
            scores[archetype] = {i: d.archetype_score for i, d in beside.items()}
            _same(beside, await session.details(space, "", ids, wanted))
    assert scores["bakers"]["bread3"] == 2.5
    assert {s for i, s in scores["bakers"].items() if i != "bread3"} == {0.0}
    assert set(scores[""].values()) == {0.0}


async def test_the_users_one_read_carries_conflicts_and_centroids(
    reads: tuple[RecommendReads, Space],
) -> None:
    pool_reads, space = reads
    async with pool_reads.session() as session:
        read = await session.user(
            "",
            "u1",
            exclude_seen=True,
            include_converted=False,
            centroids_in=space,
        )
        assert read.row is not None
        assert set(read.excluded) == {"bread0", "bread1", "bread2", "garden0"}
        assert read.conflicts == (("tls1", "bread1"),)
        assert read.centroids == []  # asked, none derived yet
        unknown = await session.user(
            "",
            "nobody",
            exclude_seen=True,
            include_converted=False,
            centroids_in=space,
        )
        assert unknown.row is None
        assert unknown.centroids is None
        assert unknown.conflicts == ()
        not_asked = await session.user("", "u1", exclude_seen=False, include_converted=False)
        assert not_asked.centroids is None


def test_beside_parameters_may_not_take_the_scans_names() -> None:
    with pytest.raises(ValueError, match="clash"):
        dense.Beside("n.id", "", {"limit": 1})


class _Recording:
    """A connection that records the statements it is sent."""

    def __init__(self, conn: object) -> None:
        self._conn = conn
        self.sent: list[str] = []

    async def fetch(self, sql: str, *args: object) -> object:
        self.sent.append(sql)
        return await self._conn.fetch(sql, *args)  # type: ignore[attr-defined]


async def test_the_newest_nodes_fill_the_popular_ones_only_when_they_fall_short(
    reads: tuple[RecommendReads, Space],
) -> None:
    """Four nodes have engagement. Asking for at most four sends one statement, without the
    newest-node scan (planned beside the popular nodes, that scan started a parallel worker
    on every call); asking for more, the newest nodes follow, with the same details."""
    pool_reads, space = reads
    wanted = Wanted(DEFAULT_VECTOR, "", slim=True, similarity_to=None)
    async with pool_reads.session() as session:
        conn = _Recording(session._conn)
        recording = RecommendSession(conn, 150, 0)  # type: ignore[arg-type]
        enough, _, _ = await recording.popular(space, "", Filter(), 4, wanted)
        assert {n for n, _ in enough} == {"bread0", "bread1", "bread2", "garden0"}
        assert len(conn.sent) == 1
        assert "updated_at DESC" not in conn.sent[0]

        conn.sent.clear()
        filled, _, details = await recording.popular(space, "", Filter(), 8, wanted)
        assert len(conn.sent) == 2
        ids = [n for n, _ in filled]
        assert ids[:4] == [n for n, _ in enough]
        newest = await session._conn.fetch(
            "SELECT id FROM semantic.nodes WHERE tenant = '' ORDER BY updated_at DESC, id LIMIT 8"
        )
        assert ids[4:] == [r["id"] for r in newest]
        _same(details, await session.details(space, "", list(dict.fromkeys(ids)), wanted))
