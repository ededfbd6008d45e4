"""The local vector index of degraded mode (semantic.store.local): updates, deletes, filtered
search scored as the dense search, save/load, and a damaged folder reported for a rebuild."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from semantic.common.errors import DependencyUnavailable
from semantic.core.degraded import IndexedNode, IndexedVector, NodeChange, check_supported
from semantic.core.domain import Filter, TimeRange, VectorTarget
from semantic.core.spaces import Space
from semantic.store.local import files
from semantic.store.local.index import UsearchIndex

pytestmark = pytest.mark.unit

DIM = 16
SPACE = Space(7, "m", "sha", DIM, 1, "active", datetime(2026, 1, 1, tzinfo=UTC), None, {})


def _vec(rng: np.random.Generator) -> np.ndarray[Any, Any]:
    return rng.standard_normal(DIM).astype(np.float32)


def _change(
    node_id: str,
    vectors: list[np.ndarray[Any, Any]],
    *,
    tenant: str = "",
    content_type: str = "page",
    tags: tuple[str, ...] = (),
    name: str = "content",
    slug: str | None = None,
) -> NodeChange:
    node = IndexedNode(tenant, node_id, content_type, slug=slug, title=node_id.upper(), tags=tags)
    rows = tuple(IndexedVector(name, i, 0, 5, v) for i, v in enumerate(vectors))
    return NodeChange((tenant, node_id), node, rows)


def _gone(node_id: str, tenant: str = "") -> NodeChange:
    return NodeChange((tenant, node_id), None)


def _cosine(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.fixture
def index(tmp_path: Path) -> UsearchIndex:
    built = UsearchIndex(tmp_path / "index")
    built.reset(SPACE)
    return built


def _brute_force(
    vectors: dict[str, list[np.ndarray[Any, Any]]], query: np.ndarray[Any, Any], k: int
) -> list[str]:
    scores = {n: max(_cosine(v, query) for v in vs) for n, vs in vectors.items()}
    return sorted(scores, key=lambda n: (-scores[n], n))[:k]


def test_search_finds_the_nearest_nodes_with_their_best_chunk(
    index: UsearchIndex, rng: np.random.Generator
) -> None:
    """The graph is approximate (and built on several threads, so not the same graph on
    every run): a top 10 finds nearly all of the exact top 10, scored exactly and in
    order; asking as many chunks as the index holds searches exactly."""
    vectors = {f"n{i}": [_vec(rng), _vec(rng)] for i in range(300)}
    index.apply([_change(n, vs) for n, vs in vectors.items()])
    query = _vec(rng)
    hits = index.search("", query, [VectorTarget()], Filter(), 10)
    exact = _brute_force(vectors, query, 10)
    assert len(hits) == 10
    assert len({h.node_id for h in hits} & set(exact)) >= 9
    for hit in hits:
        assert hit.score == pytest.approx(
            max(_cosine(v, query) for v in vectors[hit.node_id]), abs=1e-5
        )
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # 150 nodes: 600 chunks asked, every chunk of the index: the exact answer
    everything = index.search("", query, [VectorTarget()], Filter(), 150)
    assert {h.node_id for h in everything} == set(_brute_force(vectors, query, 150))
    assert [h.score for h in everything] == sorted((h.score for h in everything), reverse=True)
    best = everything[0]
    chunk_scores = [_cosine(v, query) for v in vectors[best.node_id]]
    assert best.chunk.chunk_index == int(np.argmax(chunk_scores))
    assert best.score == pytest.approx(max(chunk_scores), abs=1e-5)
    assert best.node is not None
    assert best.node.title == best.node_id.upper()


def test_an_update_replaces_the_vectors_and_a_delete_removes_the_node(
    index: UsearchIndex, rng: np.random.Generator
) -> None:
    a, b = _vec(rng), _vec(rng)
    index.apply([_change("x", [a]), _change("y", [b])])
    assert index.search("", a, [VectorTarget()], Filter(), 1)[0].node_id == "x"
    index.apply([_change("x", [b], tags=("new",))])  # x moves onto b
    hits = index.search("", b, [VectorTarget()], Filter(), 2)
    assert {h.node_id for h in hits} == {"x", "y"}
    assert index.vector_count == 2
    index.apply([_gone("x")])
    assert [h.node_id for h in index.search("", b, [VectorTarget()], Filter(), 5)] == ["y"]
    assert index.nodes == 1
    assert index.node("", node_id="x", slug=None) is None


def test_filters_on_content_type_tags_ids_and_tenant_never_shrink_the_answer(
    index: UsearchIndex, rng: np.random.Generator
) -> None:
    changes = [
        _change(
            f"n{i}",
            [_vec(rng)],
            content_type="rare" if i % 50 == 0 else "page",
            tags=("a", "b") if i % 3 == 0 else ("a",),
        )
        for i in range(500)
    ]
    index.apply([*changes, _change("other", [_vec(rng)], tenant="t2", content_type="rare")])
    query = _vec(rng)
    rare = index.search("", query, [VectorTarget()], Filter(content_types=("rare",)), 20)
    assert sorted(h.node_id for h in rare) == sorted(f"n{i}" for i in range(0, 500, 50))
    both = index.search("", query, [VectorTarget()], Filter(tags_all=("a", "b")), 10)
    assert len(both) == 10
    assert all(int(h.node_id[1:]) % 3 == 0 for h in both)
    no_b = index.search("", query, [VectorTarget()], Filter(tags_none=("b",)), 10)
    assert len(no_b) == 10
    assert all(int(h.node_id[1:]) % 3 for h in no_b)
    some = index.search(
        "", query, [VectorTarget()], Filter(ids=("n1", "n2", "n3"), exclude_ids=("n2",)), 10
    )
    assert sorted(h.node_id for h in some) == ["n1", "n3"]
    other = index.search("t2", query, [VectorTarget()], Filter(), 10)
    assert [h.node_id for h in other] == ["other"]


def test_several_targets_score_the_weighted_mean_of_best_chunks(
    index: UsearchIndex, rng: np.random.Generator
) -> None:
    t1, c1, t2 = _vec(rng), _vec(rng), _vec(rng)
    index.apply([_change("x", [t1], name="title")])
    node = index.node("", node_id="x", slug=None)
    assert node is not None
    index.apply(
        [
            NodeChange(
                ("", "x"),
                node,
                (IndexedVector("title", 0, 0, 1, t1), IndexedVector("content", 0, 0, 1, c1)),
            ),
            _change("y", [t2], name="title"),
        ]
    )
    query = _vec(rng)
    targets = [VectorTarget("title", 2.0), VectorTarget("content", 1.0)]
    hits = {h.node_id: h for h in index.search("", query, targets, Filter(), 5)}
    expected_x = (2 * _cosine(t1, query) + _cosine(c1, query)) / 3
    assert hits["x"].score == pytest.approx(expected_x, abs=1e-5)
    assert hits["y"].score == pytest.approx(2 * _cosine(t2, query) / 3, abs=1e-5)


def test_save_and_load_keep_everything(
    index: UsearchIndex, rng: np.random.Generator, tmp_path: Path
) -> None:
    vectors = {f"n{i}": [_vec(rng)] for i in range(50)}
    index.apply([_change(n, vs, slug=f"s-{n}") for n, vs in vectors.items()])
    index.mark_synced(1234, 99.5)
    index.save()
    loaded = UsearchIndex(tmp_path / "index")
    assert loaded.load()
    assert loaded.space == SPACE
    assert (loaded.cursor, loaded.synced_at, loaded.nodes) == (1234, 99.5, 50)
    query = _vec(rng)
    assert [h.node_id for h in loaded.search("", query, [VectorTarget()], Filter(), 5)] == [
        h.node_id for h in index.search("", query, [VectorTarget()], Filter(), 5)
    ]
    found = loaded.node("", node_id=None, slug="s-n3")
    assert found is not None
    assert found.id == "n3"
    assert np.allclose(
        loaded.vectors(("", "n3"), "content")[0], index.vectors(("", "n3"), "content")[0]
    )
    # Updates after a load get fresh keys.
    loaded.apply([_change("n51", [_vec(rng)])])
    assert loaded.nodes == 51
    assert loaded.vector_count == 51


def test_a_missing_or_damaged_folder_loads_as_nothing(
    index: UsearchIndex, rng: np.random.Generator, tmp_path: Path
) -> None:
    assert not UsearchIndex(tmp_path / "nowhere").load()
    index.apply([_change(f"n{i}", [_vec(rng)]) for i in range(20)])
    index.save()
    graph = tmp_path / "index" / files.GRAPH
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    damaged = UsearchIndex(tmp_path / "index")
    assert not damaged.load()
    assert damaged.space is None
    assert damaged.nodes == 0
    (tmp_path / "index" / files.NODES).write_bytes(b"not a database")
    assert not UsearchIndex(tmp_path / "index").load()
    # A new save over the damage loads again.
    index.save()
    assert UsearchIndex(tmp_path / "index").load()


def test_filters_the_local_index_cannot_evaluate_are_refused_with_a_reason() -> None:
    check_supported(Filter(content_types=("a",), tags_any=("b",), ids=("c",)))
    with pytest.raises(DependencyUnavailable, match="created"):
        check_supported(Filter(created=TimeRange(start=datetime(2026, 1, 1, tzinfo=UTC))))


def test_local_first_candidates_leave_a_small_tenant_to_postgresql(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    """Above the exhaustive size, a tenant holding under 1/16 of the nodes gets None (the
    graph search would have to grow past its widest before finding its nodes); a large one
    gets its nearest nodes, nearest first, with their best chunk's exact distance, and a
    node's later chunks never repeat it."""
    built = UsearchIndex(tmp_path / "big")
    built.reset(SPACE)
    big = [_change(f"b{i}", [_vec(rng), _vec(rng)]) for i in range(2100)]
    small = [_change(f"s{i}", [_vec(rng)], tenant="small") for i in range(100)]
    built.apply([*big, *small])
    query = _vec(rng)
    assert built.candidates("small", query, "content", Filter(), 10) is None
    found = built.candidates("", query, "content", Filter(), 10)
    assert found is not None
    near, complete = found
    assert not complete
    assert len(near) >= 10
    assert len({c.node_id for c in near}) == len(near)
    distances = [c.distance for c in near]
    assert distances == sorted(distances)
    vectors = {c.key[1]: [r.embedding for r in c.vectors] for c in big}
    for c in near:
        best = min(range(2), key=lambda i: 1 - _cosine(vectors[c.node_id][i], query))
        assert c.chunk == best
        assert c.distance == pytest.approx(1 - _cosine(vectors[c.node_id][best], query), abs=1e-5)
