"""Relation messages <-> core values: Node.relations on writes and reads, Relate,
Unrelate and Related requests validated (a bad value is InvalidArgument naming its field),
walks out."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from semantic.common import validation
from semantic.common.errors import InvalidArgument
from semantic.core.domain import NodeRecord
from semantic.core.relations import (
    MAX_DEPTH,
    MAX_DESCRIPTION_CHARS,
    Direction,
    Edge,
    EdgeKey,
    RelatedHit,
    Relation,
    WalkQuery,
)
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb

DEFAULT_RELATED = 50
_DIRECTIONS = {
    cpb.RELATION_DIRECTION_UNSPECIFIED: Direction.OUTGOING,
    cpb.RELATION_DIRECTION_OUTGOING: Direction.OUTGOING,
    cpb.RELATION_DIRECTION_INCOMING: Direction.INCOMING,
    cpb.RELATION_DIRECTION_BOTH: Direction.BOTH,
}
_DIRECTIONS_OUT = {
    Direction.OUTGOING: cpb.RELATION_DIRECTION_OUTGOING,
    Direction.INCOMING: cpb.RELATION_DIRECTION_INCOMING,
    Direction.BOTH: cpb.RELATION_DIRECTION_BOTH,
}


def relation_from_proto(message: cpb.Relation, field: str, source_id: str) -> Relation:
    """One relation written from ``source_id`` (output-only fields are ignored)."""
    validation.node_id(message.node_id, f"{field}.node_id")
    if message.node_id == source_id:
        raise InvalidArgument(f"{field}.node_id", "a node cannot be related to itself")
    validation.name(message.type, f"{field}.type")
    strength = 1.0
    if message.HasField("strength"):
        strength = validation.number(
            message.strength, f"{field}.strength", minimum=0.0, maximum=1.0
        )
    validation.text(message.description, f"{field}.description", MAX_DESCRIPTION_CHARS)
    return Relation(
        node_id=message.node_id,
        type=message.type,
        strength=strength,
        description=message.description,
    )


def node_relations(node: cpb.Node, field: str, maximum: int) -> tuple[Relation, ...] | None:
    """``Node.relations`` of a write: None when unset (kept), else the relations (each
    (node_id, type) once)."""
    if not node.HasField("relations"):
        return None
    items = node.relations.items
    validation.count(len(items), f"{field}.relations.items", maximum)
    relations = tuple(
        relation_from_proto(item, f"{field}.relations.items[{i}]", node.id)
        for i, item in enumerate(items)
    )
    twice = validation.repeated(r.key() for r in relations)
    if twice is not None:
        raise InvalidArgument(
            f"{field}.relations.items[{twice[1]}]",
            f"repeats the node_id and type of items[{twice[0]}]",
        )
    return relations


def relations_to_proto(relations: Sequence[Relation]) -> cpb.Relations:
    """A node's relations as read."""
    out = cpb.Relations()
    for relation in relations:
        item = out.items.add(
            node_id=relation.node_id,
            type=relation.type,
            strength=relation.strength,
            description=relation.description,
            discovered=relation.discovered,
            direction=_DIRECTIONS_OUT[relation.direction],
        )
        if relation.updated_at is not None:
            item.updated_at.FromDatetime(relation.updated_at)
    return out


def attach(nodes: Sequence[cpb.Node], relations: Mapping[str, Sequence[Relation]]) -> None:
    """Fill each node's ``relations`` (present, possibly empty) from ``relations``."""
    for node in nodes:
        node.relations.CopyFrom(relations_to_proto(relations.get(node.id, ())))


def edges_from_proto(request: pb.RelateRequest, maximum: int) -> list[Edge]:
    """The edges of a Relate request; the same (source, target, type) once."""
    validation.count(len(request.edges), "edges", maximum, minimum=1)
    edges = []
    for i, edge in enumerate(request.edges):
        validation.node_id(edge.source_id, f"edges[{i}].source_id")
        relation = relation_from_proto(edge.relation, f"edges[{i}].relation", edge.source_id)
        edges.append(Edge(edge.source_id, relation))
    twice = validation.repeated((e.source_id, *e.relation.key()) for e in edges)
    if twice is not None:
        raise InvalidArgument(f"edges[{twice[1]}]", f"repeats edges[{twice[0]}]")
    return edges


def keys_from_proto(request: pb.UnrelateRequest, maximum: int) -> list[EdgeKey]:
    """The keys of an Unrelate request."""
    validation.count(len(request.edges), "edges", maximum, minimum=1)
    keys = []
    for i, key in enumerate(request.edges):
        validation.node_id(key.source_id, f"edges[{i}].source_id")
        validation.node_id(key.target_id, f"edges[{i}].target_id")
        if key.type:
            validation.name(key.type, f"edges[{i}].type")
        keys.append(EdgeKey(key.source_id, key.target_id, key.type or None))
    return keys


def walk_from_proto(request: pb.RelatedRequest, tenant: str, max_limit: int) -> WalkQuery:
    """The walk a Related request asks for."""
    for i, kind in enumerate(request.types):
        validation.name(kind, f"types[{i}]")
    validation.count(len(request.types), "types", 100)
    if request.direction not in _DIRECTIONS:
        raise InvalidArgument("direction", "is not a RelationDirection")
    depth = validation.integer(request.depth, "depth", maximum=MAX_DEPTH) or 1
    limit = validation.integer(request.limit, "limit", maximum=max_limit) or DEFAULT_RELATED
    return WalkQuery(
        tenant=tenant,
        types=tuple(dict.fromkeys(request.types)),
        direction=_DIRECTIONS[request.direction],
        depth=depth,
        min_strength=validation.number(
            request.min_strength, "min_strength", minimum=0.0, maximum=1.0
        ),
        limit=limit,
        include_discovered=request.include_discovered,
    )


def related_to_proto(
    source_id: str, hits: Sequence[RelatedHit], node: Callable[[NodeRecord], cpb.Node]
) -> pb.RelatedResponse:
    """The walk's answer; ``node`` turns a NodeRecord into a cpb.Node."""
    response = pb.RelatedResponse(source_id=source_id)
    for hit in hits:
        item = response.nodes.add(depth=hit.reached.depth, strength=hit.reached.strength)
        item.node.CopyFrom(node(hit.node))
        for step in hit.reached.path:
            item.path.add(
                from_id=step.from_id,
                to_id=step.to_id,
                type=step.type,
                strength=step.strength,
                direction=_DIRECTIONS_OUT[step.direction],
            )
    return response
