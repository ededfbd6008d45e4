"""Relation discovery's pure logic (scoring, the k cap, pairing, diffing old against new
edges, who is asked to recheck) and its steps over an in-memory store at its Protocol seam."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence, Set
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pytest

from semantic.core.discovery import (
    Cause,
    DiscoveryConfig,
    DueNode,
    EdgeDiff,
    Examined,
    Key,
    Neighbour,
    RelationDiscovery,
    SimilarNow,
    Vector,
    close_nodes,
    cosine,
    edge_diff,
    rechecks,
)
from semantic.core.settings import RelationDiscoverySettings
from semantic.core.spaces import Space


def _v(*values: float) -> Vector:
    return np.asarray(values, dtype=np.float32)


def _due(node_id: str, cause: Cause = Cause.NEW, vector: Vector | None = None) -> DueNode:
    return DueNode("", node_id, f"h-{node_id}", 0, cause, vector)


def test_cosine_is_symmetric_and_zero_for_a_zero_vector() -> None:
    a, b = _v(1, 2, 0), _v(2, 1, 1)
    assert cosine(a, b) == pytest.approx(cosine(b, a))
    assert cosine(a, a) == pytest.approx(1.0)
    assert cosine(a, _v(0, 0, 0)) == 0.0


def test_close_nodes_keep_those_at_or_above_the_threshold_best_first() -> None:
    me = _v(1, 0)
    candidates = {
        "me": me,
        "same": _v(2, 0),  # cosine 1
        "near-b": _v(1, 0.5),  # 0.894
        "near-a": _v(1, 0.5),  # a tie: by id
        "far": _v(0, 1),  # 0
        "client": _v(1, 0.1),  # linked by a client relation
    }
    found = close_nodes("me", me, candidates, threshold=0.8, blocked={"client"})
    assert [n.node_id for n in found] == ["same", "near-a", "near-b"]
    assert found[0].similarity == pytest.approx(1.0)
    strict = close_nodes("me", me, candidates, threshold=0.95, blocked={"client"})
    assert strict == [found[0]]


def test_strength_is_the_similarity_clamped_and_the_description_says_so() -> None:
    assert Neighbour("x", 0.87123).strength == 0.8712
    assert Neighbour("x", 1.0000001).strength == 1.0
    assert Neighbour("x", -0.2).strength == 0.0
    assert Neighbour("x", 0.87123).description == "discovered: cosine 0.87"


def test_edge_diff_adds_rewrites_and_removes() -> None:
    old = {"a": 0.9, "b": 0.85, "gone": 0.81}
    new = [Neighbour("a", 0.9), Neighbour("b", 0.95), Neighbour("c", 0.82)]
    diff = edge_diff(old, new)
    assert [n.node_id for n in diff.added] == ["c"]
    assert [n.node_id for n in diff.updated] == ["b"]
    assert diff.removed == ("gone",)
    assert edge_diff(old, [Neighbour("a", 0.90001), Neighbour("b", 0.85)]) == EdgeDiff(
        removed=("gone",)
    )  # a difference below the 4 decimals kept is no change
    assert edge_diff({}, []) == EdgeDiff()


def test_new_or_changed_content_asks_the_nodes_it_may_change_for() -> None:
    close = [
        Neighbour("kept", 0.9),  # has me at this strength: nothing to do
        Neighbour("moved", 0.85),  # has me at another strength
        Neighbour("room", 0.84),  # fewer than k edges, none to me
        Neighbour("full", 0.83),  # k edges, all stronger
        Neighbour("weak", 0.82),  # k edges, one weaker
        Neighbour("same-step", 0.99),
    ]
    their = {
        "kept": {"me": 0.9, "x": 0.95},
        "moved": {"me": 0.95},
        "room": {"x": 0.99},
        "full": {"x": 0.99, "y": 0.98},
        "weak": {"x": 0.99, "y": 0.81},
        "gone": {"me": 0.88},  # no longer close to me
    }
    incoming = {"kept", "moved", "gone", "me"}
    changed = _due("me", Cause.CHANGED)
    asked = rechecks(changed, close, incoming, {"me", "same-step"}, their_edges=their, k=2)
    assert asked == ("gone", "moved", "room", "weak")
    new = _due("me", Cause.NEW)
    assert rechecks(new, close, set(), {"me"}, their_edges={}, k=2) == (
        "full",
        "kept",
        "moved",
        "room",
        "same-step",
        "weak",
    )
    for cause in (Cause.RECHECK, Cause.SPACE):  # they ask nobody
        assert rechecks(_due("me", cause), close, incoming, {"me"}, their_edges={}, k=2) == ()


def test_settings_defaults_and_the_core_value() -> None:
    settings = RelationDiscoverySettings()
    assert settings.relations_discover is True
    config = settings.discovery_config()
    assert (config.threshold, config.k, config.batch_size) == (0.8, 5, 256)
    assert config.candidates == 21


def test_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEMANTIC_RELATIONS_DISCOVER", "false")
    monkeypatch.setenv("SEMANTIC_RELATIONS_SIMILAR_THRESHOLD", "0.9")
    monkeypatch.setenv("SEMANTIC_RELATIONS_SIMILAR_K", "2")
    monkeypatch.setenv("SEMANTIC_RELATIONS_DISCOVER_BATCH_SIZE", "10")
    settings = RelationDiscoverySettings()
    assert settings.relations_discover is False
    assert settings.discovery_config() == DiscoveryConfig(0.9, 2, 10)


# --- steps over an in-memory store ---------------------------------------------------------

SPACE = Space(1, "m", "sha", 2, 1, "active", datetime.now(UTC), None, {})


@dataclass
class _Store:
    """Nodes with one vector each, relations and discovery rows, in memory."""

    vectors: dict[str, Vector]
    hashes: dict[str, str] = field(default_factory=dict)
    rows: dict[str, tuple[int, str, int, int]] = field(default_factory=dict)
    """node -> (space, content hash, recheck, checked)"""
    relations: dict[tuple[str, str], tuple[float, bool]] = field(default_factory=dict)
    """(source, target) -> (strength, discovered): `similar` relations"""
    held: bool = False

    def hash_of(self, node: str) -> str:
        return self.hashes.get(node, "h")

    def _cause(self, node: str, space: Space) -> Cause | None:
        row = self.rows.get(node)
        if row is None:
            return Cause.NEW
        if row[1] != self.hash_of(node):
            return Cause.CHANGED
        if row[0] != space.id:
            return Cause.SPACE
        return Cause.RECHECK if row[2] > row[3] else None

    async def due(self, space: Space, after: Key, limit: int) -> list[DueNode]:
        out = []
        for node in sorted(self.vectors):
            cause = self._cause(node, space)
            if ("", node) > after and cause is not None:
                recheck = self.rows[node][2] if node in self.rows else 0
                out.append(
                    DueNode("", node, self.hash_of(node), recheck, cause, self.vectors[node])
                )
        return out[:limit]

    async def pending(self, space: Space) -> int:
        return sum(1 for n in self.vectors if self._cause(n, space) is not None)

    async def nearest(self, space: Space, tenant: str, vector: Vector, limit: int) -> list[str]:
        ranked = sorted(self.vectors, key=lambda n: (-cosine(vector, self.vectors[n]), n))
        return ranked[:limit]

    async def mean_vectors(self, space: Space, keys: Set[Key]) -> dict[Key, Vector]:
        return {k: self.vectors[k[1]] for k in keys if k[1] in self.vectors}

    async def similar_now(self, tenant: str, ids: Sequence[str]) -> SimilarNow:
        outgoing: dict[str, dict[str, float]] = {}
        incoming: dict[str, set[str]] = {}
        client: dict[str, set[str]] = {}
        for (source, target), (strength, discovered) in self.relations.items():
            if discovered:
                outgoing.setdefault(source, {})[target] = strength
                incoming.setdefault(target, set()).add(source)
            else:
                client.setdefault(source, set()).add(target)
                client.setdefault(target, set()).add(source)
        return SimilarNow(outgoing, incoming, client)

    async def apply(self, space: Space, examined: Sequence[Examined]) -> tuple[int, int, int, int]:
        added = updated = removed = 0
        for e in examined:
            source = e.node.node_id
            for target in e.diff.removed:
                if self.relations.get((source, target), (0, False))[1]:
                    del self.relations[(source, target)]
                    removed += 1
            for n in (*e.diff.added, *e.diff.updated):
                current = self.relations.get((source, n.node_id))
                if current is not None and not current[1]:
                    continue  # a client relation stays as it is
                added += current is None
                updated += current is not None
                self.relations[(source, n.node_id)] = (n.strength, True)
            self.rows[source] = (space.id, e.node.content_hash, e.node.recheck, e.node.recheck)
            for other in e.recheck:
                if other in self.rows:
                    s, h, r, c = self.rows[other]
                    self.rows[other] = (s, h, r + 1, c)
        return added, updated, removed, 0

    @asynccontextmanager
    async def exclusive(self, space_id: int) -> AsyncIterator[bool]:
        yield not self.held

    def discovered(self) -> dict[tuple[str, str], float]:
        return {k: s for k, (s, d) in self.relations.items() if d}


def _cluster() -> dict[str, Vector]:
    """a, b, c close together; d apart; e close to a only loosely."""
    return {
        "a": _v(1, 0),
        "b": _v(1, 0.1),
        "c": _v(1, 0.2),
        "d": _v(0, 1),
        "e": _v(1, 1),  # cosine 0.707 with a
    }


async def test_mutual_neighbours_get_an_edge_each_way_with_one_strength() -> None:
    store = _Store(_cluster())
    discovery = RelationDiscovery(store, DiscoveryConfig(threshold=0.9, k=5, batch_size=100))
    report = await discovery.run(SPACE)
    edges = store.discovered()
    assert set(edges) == {(x, y) for x in "abc" for y in "abc" if x != y}
    assert edges[("a", "b")] == edges[("b", "a")]
    assert (report.examined, report.added, report.pending) == (5, 6, 0)
    again = await discovery.run(SPACE)
    assert (again.examined, again.added, again.removed) == (0, 0, 0)


async def test_k_caps_each_nodes_outgoing_edges_and_keeps_the_closest() -> None:
    store = _Store(_cluster())
    await RelationDiscovery(store, DiscoveryConfig(0.9, 1, 100)).run(SPACE)
    # b is closer to c than to a: a k-NN graph need not be mutual.
    assert set(store.discovered()) == {("a", "b"), ("b", "c"), ("c", "b")}


async def test_a_client_similar_relation_is_kept_and_its_pair_never_discovered() -> None:
    store = _Store(_cluster())
    store.relations[("b", "a")] = (0.3, False)  # a client's, weaker than the similarity
    await RelationDiscovery(store, DiscoveryConfig(0.9, 5, 100)).run(SPACE)
    assert store.relations[("b", "a")] == (0.3, False)
    assert ("a", "b") not in store.relations  # not doubled the other way either
    assert ("a", "c") in store.relations


async def test_changed_content_removes_stale_edges_and_rechecks_the_old_neighbours() -> None:
    store = _Store(_cluster())
    discovery = RelationDiscovery(store, DiscoveryConfig(0.9, 5, 100))
    await discovery.run(SPACE)
    store.vectors["c"], store.hashes["c"] = _v(0, 1), "h2"  # c now reads like d
    report = await discovery.run(SPACE)
    edges = store.discovered()
    assert ("a", "c") not in edges
    assert ("c", "a") not in edges
    assert ("c", "d") in edges
    assert ("d", "c") in edges
    assert ("a", "b") in edges
    assert report.removed == 4  # c->a, c->b, a->c, b->c
    assert report.rechecks == 3  # a and b (had edges to c), d (close to c now)


async def test_a_space_switch_examines_every_node_again() -> None:
    store = _Store(_cluster())
    discovery = RelationDiscovery(store, DiscoveryConfig(0.9, 5, 100))
    await discovery.run(SPACE)
    other = Space(2, "m2", "sha2", 2, 1, "active", datetime.now(UTC), None, {})
    assert await discovery.pending(other) == 5
    report = await discovery.run(other)
    assert (report.examined, report.added, report.removed, report.rechecks) == (5, 0, 0, 0)


async def test_steps_are_bounded_and_the_cursor_wraps_around() -> None:
    store = _Store(_cluster())
    discovery = RelationDiscovery(store, DiscoveryConfig(0.9, 5, 2))
    first = await discovery.step(SPACE)
    assert first is not None
    assert (first.examined, first.more, first.pending) == (2, True, 3)
    second = await discovery.step(SPACE)
    third = await discovery.step(SPACE)
    assert second is not None
    assert third is not None
    assert (second.examined, third.examined) == (2, 1)
    last = await discovery.step(SPACE)  # from the start again: nothing due
    assert last is not None
    assert (last.examined, last.more, last.pending) == (0, False, 0)
    assert (first.rechecks, second.rechecks, third.rechecks) == (2, 0, 0)  # a and b ask c
    store.held = True
    assert await discovery.step(SPACE) is None
