"""Relation-aware recommendations, through the gRPC Search service with real PostgreSQL and
the real embedder: a `prerequisite` relation from a node the user just viewed, or a
`follows` relation to it, raises the node it leads to (its part and the relations that
raised it in the explanation); a node in `conflicts` with a node the user converted on is
left out and named in the response; with the relations weight at 0 nothing is raised."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from indexer_kit import running_search, search_env

from semantic.v1 import common_pb2 as cpb
from semantic.v1 import events_pb2 as epb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

PAGES = {
    "intro": ("Sourdough basics", "What a starter is and how flour, water and salt make bread."),
    "starter": ("Feeding a starter", "Feed the sourdough starter flour and water every day."),
    "shaping": ("Shaping the loaf", "Fold and shape the sourdough dough before proofing."),
    "baking": ("Baking the loaf", "Bake sourdough in a hot Dutch oven for a crisp crust."),
    "taxes": ("Filing taxes", "Collect your receipts and file the tax return before April."),
    "yeast": ("Instant yeast bread", "A quick loaf with instant yeast instead of a starter."),
    "rye": ("Rye sourdough", "A dense sourdough loaf with rye flour and caraway."),
}


def _node(key: str, relations: list[cpb.Relation] | None = None) -> cpb.Node:
    title, body = PAGES[key]
    node = cpb.Node(id=key, content_type="page", title=title, body=body, version=1)
    if relations is not None:
        node.relations.CopyFrom(cpb.Relations(items=relations))
    return node


def _event(node: str, action: int) -> epb.UserEvent:
    return epb.UserEvent(event_id=str(uuid.uuid4()), user_id="baker", node_id=node, action=action)


@pytest.fixture
def env(database_url: str, embedder_address: str, fp32_model_dir: Path) -> dict[str, str]:
    return search_env(database_url, embedder_address, fp32_model_dir)


async def test_relations_raise_next_steps_and_conflicts_leave_out(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_search(env, monkeypatch) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        await stub.Upsert(
            pb.UpsertRequest(
                nodes=[
                    # intro is a prerequisite of taxes (an odd next step, far in meaning, so
                    # only the relation can raise it); baking follows intro.
                    _node("intro", [cpb.Relation(node_id="taxes", type="prerequisite")]),
                    _node("baking", [cpb.Relation(node_id="intro", type="follows", strength=0.5)]),
                    _node("starter"),
                    _node("shaping"),
                    _node("taxes"),
                    # yeast bread conflicts with the sourdough course the user bought.
                    _node("yeast", [cpb.Relation(node_id="rye", type="conflicts")]),
                    _node("rye"),
                ]
            ),
            timeout=120,
        )
        await stub.Track(
            pb.TrackRequest(
                events=[
                    _event("intro", epb.USER_ACTION_VIEW),
                    _event("rye", epb.USER_ACTION_CONVERT),
                ]
            )
        )

        async def recommend(relations: float | None) -> pb.RecommendResponse:
            request = pb.RecommendRequest(user_id="baker", top_k=10)
            if relations is not None:
                request.weights.relations = relations
            reply: pb.RecommendResponse = await stub.Recommend(request)
            return reply

        plain = await recommend(0.0)
        order = [h.node.id for h in plain.hits]
        assert order[-1] == "taxes"  # the farthest in meaning
        assert all(not h.explanation.related_via for h in plain.hits)

        raised = await recommend(1.0)
        by_id = {h.node.id: h for h in raised.hits}
        # From last to second (+ 1.0 x strength 1); baking, already close, first (+ 0.5).
        assert [h.node.id for h in raised.hits][:2] == ["baking", "taxes"]
        taxes = by_id["taxes"].explanation
        assert (taxes.relations.value, taxes.relations.weight) == (1.0, 1.0)
        assert [(v.from_id, v.type, v.strength) for v in taxes.related_via] == [
            ("intro", "prerequisite", 1.0)
        ]
        baking = by_id["baking"].explanation
        assert [(v.from_id, v.type) for v in baking.related_via] == [("intro", "follows")]
        assert baking.relations.contribution == pytest.approx(0.5)
        assert by_id["taxes"].score == pytest.approx(
            sum(
                p.contribution
                for p in (
                    taxes.similarity,
                    taxes.engagement,
                    taxes.recency,
                    taxes.archetype_prior,
                    taxes.relations,
                )
            )
        )

        # The conflict with the converted node leaves yeast out, with the reason.
        for reply in (plain, raised):
            assert "yeast" not in [h.node.id for h in reply.hits]
            assert [(c.node_id, c.conflicts_with) for c in reply.excluded_conflicts] == [
                ("yeast", "rye")
            ]
        default = await recommend(None)  # the setting's weight (0.3) raises too
        assert any(h.explanation.related_via for h in default.hits)
