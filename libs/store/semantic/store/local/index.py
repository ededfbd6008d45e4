"""The local vector index of one space (the core's ``LocalIndex``): usearch HNSW + node fields.

Every chunk vector of the space gets a usearch key (a counter); beside the graph, plain
dicts map each key to its node and chunk, and each node to its kept fields
(``semantic.core.degraded.IndexedNode``) and its keys. Vectors are stored L2-normalised,
the metric is cosine.

A search scores as the PostgreSQL dense search does: a node's similarity for one vector
name is its best chunk's; with several targets ``sum(weight * similarity) / sum(weights)``.
Filters (tenant, content types, tags, ids) are applied after the graph search, which
oversamples: it asks for ``limit * OVERSAMPLE`` chunks and grows the count until enough
nodes pass or the whole index was asked, and then searches exactly, so a selective filter
never shrinks the answer. Candidates are re-scored exactly from their stored vectors.

Saving and loading (:mod:`semantic.store.local.files`) keep the graph in ``vectors.usearch``
and the rest in ``nodes.sqlite`` in the index's folder. Everything runs on the caller's
thread (the event loop): searches, updates and saves never overlap.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from usearch.index import Index

from semantic.core.degraded import IndexedNode, Key, LocalCandidate, NodeChange, matches
from semantic.core.domain import ChunkMatch, DenseHit, Filter, VectorTarget
from semantic.core.spaces import Space
from semantic.store.local import files

log = structlog.get_logger(__name__)

OVERSAMPLE = 4
"""Chunks asked of the graph per wanted node on the first try."""
GROWTH = 4
CONNECTIVITY = 16
EXACT_UNDER = 2048
"""Up to this many vectors the graph is searched exhaustively (a fraction of a millisecond):
a small index answers exactly, as PostgreSQL's exact path does for a small filter."""
WIDEST_GROWTHS = 2
WIDEST_MIN = 512
"""A local-first search (``candidates``) asks the graph for at most ``GROWTH`` **
``WIDEST_GROWTHS`` times its first count of chunks (and at least ``WIDEST_MIN``) before it
leaves the query to PostgreSQL."""
EXPANSION_ADD = 128
EXPANSION_SEARCH = 128
"""Candidates a degraded search explores. At 200,000 nodes degraded answers found 0.946 of
the normal answers' top 10 with 128 and 0.940 with 256 (`semantic bench snapshot`, two
runs): the difference between two approximate indexes, not the search's breadth."""


class ChunkRef:
    """Where one usearch key points: a node's chunk of one vector name."""

    __slots__ = ("chunk", "name", "node", "span_end", "span_start")

    def __init__(self, node: Key, name: str, chunk: int, span_start: int, span_end: int) -> None:
        self.node = node
        self.name = name
        self.chunk = chunk
        self.span_start = span_start
        self.span_end = span_end


class UsearchIndex:
    """One space's vectors and node fields in memory, saved to and loaded from ``folder``."""

    def __init__(self, folder: Path, *, expansion_search: int = EXPANSION_SEARCH) -> None:
        self._folder = folder
        self._expansion_search = expansion_search
        self._space: Space | None = None
        self._cursor = 0
        self._synced_at = 0.0
        self._graph: Index | None = None
        self._next_key = 1
        self._nodes: dict[Key, IndexedNode] = {}
        self._tenants: Counter[str] = Counter()
        """Nodes per tenant (a tenant of a small share of the graph is left to PostgreSQL)."""
        self._slugs: dict[tuple[str, str], str] = {}
        self._keys: dict[Key, list[int]] = {}
        self._refs: dict[int, ChunkRef] = {}

    # --- state ----------------------------------------------------------------------------

    @property
    def space(self) -> Space | None:
        """The space indexed; None when empty."""
        return self._space

    @property
    def cursor(self) -> int:
        """The change-log cursor the contents are current to."""
        return self._cursor

    @property
    def synced_at(self) -> float:
        """Epoch seconds of the last successful sync (0: never)."""
        return self._synced_at

    @property
    def nodes(self) -> int:
        """Nodes indexed."""
        return len(self._nodes)

    @property
    def vector_count(self) -> int:
        """Chunk vectors indexed."""
        return len(self._refs)

    def reset(self, space: Space) -> None:
        """Empty, for ``space``."""
        self._space = space
        self._cursor = 0
        self._synced_at = 0.0
        self._graph = _new_graph(space.dim, self._expansion_search)
        self._next_key = 1
        self._nodes.clear()
        self._tenants.clear()
        self._slugs.clear()
        self._keys.clear()
        self._refs.clear()

    def mark_synced(self, cursor: int, at: float) -> None:
        """The contents are current to ``cursor`` as of ``at``."""
        self._cursor = cursor
        self._synced_at = at

    # --- changes --------------------------------------------------------------------------

    def apply(self, changes: Sequence[NodeChange]) -> None:
        """Replace or remove each changed node (its fields and all its vectors)."""
        if self._graph is None or self._space is None:
            raise RuntimeError("the local index has no space yet (reset first)")
        keys: list[int] = []
        vectors: list[np.ndarray[Any, Any]] = []
        for change in changes:
            self._remove(change.key)
            if change.node is None:
                continue
            self._nodes[change.key] = change.node
            self._tenants[change.node.tenant] += 1
            if change.node.slug is not None:
                self._slugs[(change.node.tenant, change.node.slug)] = change.node.id
            own: list[int] = []
            for vector in change.vectors:
                if vector.embedding.size != self._space.dim:
                    continue  # not of this space's model: never searched
                key = self._next_key
                self._next_key += 1
                own.append(key)
                self._refs[key] = ChunkRef(
                    change.key, vector.name, vector.chunk, vector.span_start, vector.span_end
                )
                keys.append(key)
                vectors.append(vector.embedding)
            self._keys[change.key] = own
        if keys:
            self._graph.add(np.asarray(keys, dtype=np.uint64), _normalised(np.stack(vectors)))

    def _remove(self, node: Key) -> None:
        old = self._nodes.pop(node, None)
        if old is not None:
            self._tenants[old.tenant] -= 1
        if old is not None and old.slug is not None:
            self._slugs.pop((old.tenant, old.slug), None)
        keys = self._keys.pop(node, [])
        for key in keys:
            del self._refs[key]
        if keys and self._graph is not None:
            self._graph.remove(np.asarray(keys, dtype=np.uint64))

    # --- reads ----------------------------------------------------------------------------

    def node(self, tenant: str, *, node_id: str | None, slug: str | None) -> IndexedNode | None:
        """One node by id, else by slug."""
        if node_id:
            return self._nodes.get((tenant, node_id))
        if slug:
            found = self._slugs.get((tenant, slug))
            return self._nodes.get((tenant, found)) if found is not None else None
        return None

    def vectors(self, key: Key, name: str) -> list[np.ndarray[Any, Any]]:
        """The (normalised) chunk vectors of one node and name, in chunk order."""
        if self._graph is None:
            return []
        own = sorted(
            (k for k in self._keys.get(key, []) if self._refs[k].name == name),
            key=lambda k: self._refs[k].chunk,
        )
        return [np.asarray(self._graph.get(k), dtype=np.float32) for k in own]

    def search(
        self,
        tenant: str,
        vector: np.ndarray[Any, Any],
        targets: Sequence[VectorTarget],
        flt: Filter,
        limit: int,
    ) -> list[DenseHit]:
        """The ``limit`` best nodes (module doc), nodes attached, best first."""
        graph = self._graph
        if graph is None or limit <= 0 or not self._refs:
            return []
        query = _normalised(np.asarray(vector, dtype=np.float32).reshape(1, -1))[0]
        names = {t.name for t in targets}
        candidates: set[Key] = set()
        for name in names:
            found = self._candidates(graph, query, tenant=tenant, name=name, flt=flt, limit=limit)
            assert found is not None  # no widest: it never gives up
            candidates.update(found[0])
        scored = [self._score(graph, query, node, targets) for node in candidates]
        scored.sort(key=lambda hit: (-hit.score, hit.node_id))
        return scored[:limit]

    def candidates(
        self,
        tenant: str,
        vector: np.ndarray[Any, Any],
        name: str,
        flt: Filter,
        limit: int,
    ) -> tuple[list[LocalCandidate], bool] | None:
        """At least ``limit`` nodes of ``tenant`` nearest ``vector`` (best chunk of ``name``,
        ``flt``'s content types, tags and ids applied), nearest first, and whether they are
        all such nodes; None when the graph would have to be asked for more than
        ``WIDEST_GROWTHS`` growths of its first count (a tenant or filter holding a small
        share of the index: PostgreSQL finds those faster)."""
        graph = self._graph
        if graph is None or limit <= 0:
            return None
        if not self._refs:
            return [], True
        held = len(self._nodes)
        if held > EXACT_UNDER and self._tenants[tenant] * GROWTH**WIDEST_GROWTHS < held:
            return None  # too small a share of the graph: the widest search would miss it
        query = _normalised(np.asarray(vector, dtype=np.float32).reshape(1, -1))[0]
        first = max(limit * OVERSAMPLE, 32)
        widest = max(first * GROWTH**WIDEST_GROWTHS, WIDEST_MIN)
        found = self._candidates(
            graph, query, tenant=tenant, name=name, flt=flt, limit=limit, widest=widest
        )
        if found is None:
            return None
        nodes, complete = found
        return [
            LocalCandidate(key[1], ref.chunk, ref.span_start, ref.span_end, distance)
            for key, (ref, distance) in nodes.items()
        ], complete

    def _candidates(
        self,
        graph: Index,
        query: np.ndarray[Any, Any],
        *,
        tenant: str,
        name: str,
        flt: Filter,
        limit: int,
        widest: int | None = None,
    ) -> tuple[dict[Key, tuple[ChunkRef, float]], bool] | None:
        """The nodes of the best chunks of ``name`` that pass the filter, nearest first, each
        with its best chunk and that chunk's distance, at least ``limit`` of them when that
        many exist, and whether the whole graph was searched; None when that takes asking
        for more than ``widest`` chunks."""
        total = len(graph)
        count = total if total <= EXACT_UNDER else min(total, max(limit * OVERSAMPLE, 32))
        unfiltered = flt.is_empty
        while True:
            exact = count >= total
            found = graph.search(query, count, exact=exact)
            keys = np.asarray(found.keys, dtype=np.uint64).tolist()
            distances = np.asarray(found.distances, dtype=np.float64).tolist()
            nodes: dict[Key, tuple[ChunkRef, float]] = {}
            refs, held = self._refs, self._nodes
            for key, distance in zip(keys, distances, strict=True):
                ref = refs.get(key)
                if ref is None or ref.name != name or ref.node[0] != tenant or ref.node in nodes:
                    continue
                node = held.get(ref.node)
                if node is not None and (unfiltered or matches(node, flt)):
                    nodes[ref.node] = (ref, distance)
            if len(nodes) >= limit or exact:
                return nodes, exact
            if widest is not None and count >= widest:
                return None
            count = min(total, count * GROWTH)

    def _score(
        self,
        graph: Index,
        query: np.ndarray[Any, Any],
        node: Key,
        targets: Sequence[VectorTarget],
    ) -> DenseHit:
        """Exact score of one node: best chunk per target, weighted mean over targets."""
        total_weight = sum(t.weight for t in targets) or 1.0
        by_name: dict[str, tuple[float, ChunkRef]] = {}
        own = self._keys.get(node, [])
        if own:
            stored = np.asarray(graph.get(np.asarray(own, dtype=np.uint64)), dtype=np.float32)
            similarities = stored.reshape(len(own), -1) @ query
            for key, similarity in zip(own, similarities.tolist(), strict=True):
                ref = self._refs[key]
                best = by_name.get(ref.name)
                if best is None or similarity > best[0]:
                    by_name[ref.name] = (float(similarity), ref)
        score = 0.0
        chosen: tuple[float, ChunkRef] | None = None
        contribution = -np.inf
        target_scores: dict[str, float] = {}
        for target in targets:
            best = by_name.get(target.name)
            if best is None:
                continue
            target_scores[target.name] = best[0]
            score += target.weight * best[0]
            if target.weight * best[0] > contribution:
                contribution, chosen = target.weight * best[0], best
        score /= total_weight
        if chosen is None:
            chunk = ChunkMatch(targets[0].name, 0, 0, 0, 0.0)
        else:
            similarity, ref = chosen
            chunk = ChunkMatch(ref.name, ref.chunk, ref.span_start, ref.span_end, similarity)
        return DenseHit(
            node_id=node[1],
            score=score,
            chunk=chunk,
            target_scores=target_scores if len(targets) > 1 else {},
            node=self._nodes[node].record(),
        )

    # --- files ----------------------------------------------------------------------------

    def save(self) -> None:
        """Write the folder's two files (see :mod:`semantic.store.local.files`)."""
        if self._space is None or self._graph is None:
            return
        files.save(
            self._folder,
            files.Contents(
                space=self._space,
                cursor=self._cursor,
                synced_at=self._synced_at,
                next_key=self._next_key,
                nodes=list(self._nodes.values()),
                refs=[
                    (key, ref.node, ref.name, ref.chunk, ref.span_start, ref.span_end)
                    for key, ref in self._refs.items()
                ],
            ),
            self._graph,
        )

    def load(self) -> bool:
        """Read the folder; False (and left empty) when missing or corrupt."""
        loaded = files.load(self._folder)
        if loaded is None:
            return False
        contents, graph = loaded
        self.reset(contents.space)
        # A restored graph has usearch's default; the setter exists (its stub misses it).
        graph.expansion_search = self._expansion_search  # type: ignore[misc]
        self._graph = graph
        self._cursor = contents.cursor
        self._synced_at = contents.synced_at
        self._next_key = contents.next_key
        for node in contents.nodes:
            self._nodes[node.key] = node
            self._tenants[node.tenant] += 1
            if node.slug is not None:
                self._slugs[(node.tenant, node.slug)] = node.id
        for key, node_key, name, chunk, start, end in contents.refs:
            self._refs[key] = ChunkRef(node_key, name, chunk, start, end)
            self._keys.setdefault(node_key, []).append(key)
        return True


def _new_graph(dim: int, expansion_search: int) -> Index:
    graph = Index(
        ndim=dim,
        metric="cos",
        dtype="f32",
        connectivity=CONNECTIVITY,
        expansion_add=EXPANSION_ADD,
        expansion_search=expansion_search,
    )
    return graph


def _normalised(vectors: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    matrix = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(matrix / norms)
