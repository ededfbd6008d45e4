"""Feedback and score modifiers against a real search service, PostgreSQL and the model:
Feedback keeps per-node counters (idempotent per feedback_id, unknown nodes reported),
returned with nodes on request; FeedbackEvents on NATS count the same way through the
indexer; score modifiers on Search and Nearest re-rank by feedback and metadata, explain
every contribution, never fail on missing or non-numeric fields, and the defaults per
content type apply unless skipped; bad input is INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path
from typing import Any

import grpc
import nats
import pytest
from indexer_kit import (
    indexer_env,
    running_indexer,
    running_search,
    search_env,
    wait_for,
)
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError

from semantic.v1 import common_pb2 as cpb
from semantic.v1 import events_pb2 as epb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

PATTERNS = {
    "retry": ("Retry with backoff", "Retry transient network failures with backoff and jitter."),
    "retry-loop": ("Retry in a loop", "Retry failed network calls in a loop until they work."),
    "breaker": ("Circuit breaker", "Stop calling a failing network dependency for a while."),
    "cache": ("Cache reads", "Cache idempotent reads with explicit invalidation."),
}
SUCCESS, FAILURE = epb.FEEDBACK_OUTCOME_SUCCESS, epb.FEEDBACK_OUTCOME_FAILURE


def _node(key: str, **metadata: Any) -> cpb.Node:
    title, body = PATTERNS[key]
    node = cpb.Node(
        id=key, slug=f"{key}-page", content_type="fix_pattern", title=title, body=body,
        tags=["net"], version=1,
    )  # fmt: skip
    node.metadata.update(metadata)
    return node


def _item(node_id: str, outcome: int, *, minutes: float | None = None) -> epb.FeedbackItem:
    item = epb.FeedbackItem(feedback_id=str(uuid.uuid4()), node_id=node_id, outcome=outcome)
    if minutes is not None:
        item.minutes_saved = minutes
    return item


@pytest.fixture
def env(database_url: str, embedder_address: str, fp32_model_dir: Path) -> dict[str, str]:
    return search_env(database_url, embedder_address, fp32_model_dir)


def _with(query: pb.SearchRequest, **fields: Any) -> pb.SearchRequest:
    """A copy of ``query`` with ``fields`` set."""
    copy = pb.SearchRequest()
    copy.CopyFrom(query)
    for name, value in fields.items():
        if name == "modifiers":
            copy.modifiers.extend(value)
        else:
            setattr(copy, name, value)
    return copy


def _ids(reply: Any) -> list[str]:
    return [h.node.id for h in reply.hits]


async def _load(stub: search_pb2_grpc.SearchStub) -> None:
    await stub.Upsert(
        pb.UpsertRequest(
            nodes=[
                _node("retry", ctr=0.01, layers=[1, 2]),
                _node("retry-loop", ctr=0.30, layers=[3]),
                _node("breaker", ctr="unknown"),
                _node("cache"),
            ]
        ),
        timeout=120,
    )


async def test_feedback_counts_once_and_comes_back_with_nodes(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_search(env, monkeypatch) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        await _load(stub)
        first = [_item("retry", SUCCESS, minutes=30), _item("retry", SUCCESS, minutes=10)]
        first += [_item("retry", FAILURE), _item("ghost", SUCCESS)]
        reply = await stub.Feedback(pb.FeedbackRequest(items=first))
        assert (reply.recorded, reply.duplicates) == (3, 0)
        assert list(reply.unknown_node_items) == [3]
        counted = reply.feedback["retry"]
        assert (counted.applied, counted.succeeded, counted.failed) == (3, 2, 1)
        assert counted.success_rate == pytest.approx(3 / 5)
        assert counted.avg_minutes_saved == pytest.approx(20)
        assert 0 < counted.confidence < counted.success_rate

        again = await stub.Feedback(pb.FeedbackRequest(items=first[:2]))  # a retry
        assert (again.recorded, again.duplicates) == (0, 2)
        by_slug = epb.FeedbackItem(feedback_id="s1", slug="cache-page", outcome=SUCCESS)
        assert (await stub.Feedback(pb.FeedbackRequest(items=[by_slug]))).recorded == 1

        got = await stub.Get(
            pb.GetRequest(ids=["retry", "cache", "breaker"], include_feedback=True)
        )
        feedback = {n.id: n.feedback for n in got.nodes}
        assert feedback["retry"].applied == 3
        assert feedback["cache"].applied == 1
        assert feedback["breaker"].applied == 0
        assert feedback["breaker"].success_rate == pytest.approx(0.5)  # the prior
        assert not feedback["breaker"].HasField("avg_minutes_saved")
        plain = await stub.Get(pb.GetRequest(ids=["retry"]))
        assert not plain.nodes[0].HasField("feedback")  # only on request
        hits = await stub.Search(
            pb.SearchRequest(text="retry network", mode=pb.SEARCH_MODE_DENSE, include_feedback=True)
        )
        assert {h.node.id: h.node.feedback.applied for h in hits.hits}["retry"] == 3


@pytest.mark.parametrize(
    ("item", "field"),
    [
        (epb.FeedbackItem(node_id="retry", outcome=SUCCESS), "items[0].feedback_id"),
        (epb.FeedbackItem(feedback_id="x", outcome=SUCCESS), "items[0].node_id"),
        (epb.FeedbackItem(feedback_id="x", node_id="retry"), "items[0].outcome"),
        (
            epb.FeedbackItem(feedback_id="x", node_id="retry", outcome=SUCCESS, note="\x00"),
            "items[0].note",
        ),
        (
            epb.FeedbackItem(
                feedback_id="x", node_id="retry", outcome=SUCCESS, minutes_saved=math.nan
            ),
            "items[0].minutes_saved",
        ),
        (
            epb.FeedbackItem(feedback_id="x", node_id="retry", outcome=SUCCESS, note="n" * 2001),
            "items[0].note",
        ),
    ],
)
async def test_bad_feedback_is_refused_naming_the_field(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, item: epb.FeedbackItem, field: str
) -> None:
    async with running_search(env, monkeypatch) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Feedback(pb.FeedbackRequest(items=[item]))
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert (refused.value.details() or "").startswith(field)
        twice = [_item("retry", SUCCESS), _item("retry", SUCCESS)]
        twice[1].feedback_id = twice[0].feedback_id
        with pytest.raises(grpc.aio.AioRpcError) as repeated:
            await stub.Feedback(pb.FeedbackRequest(items=twice))
        assert repeated.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "items[1].feedback_id" in (repeated.value.details() or "")


async def test_modifiers_rerank_by_feedback_and_metadata_and_explain_it(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_search(env, monkeypatch) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        await _load(stub)
        query = pb.SearchRequest(text="retry failed network calls", mode=pb.SEARCH_MODE_DENSE)
        plain = _ids(await stub.Search(query))
        assert plain[0] == "retry-loop"
        # retry-loop keeps failing, retry keeps working: the success rate turns them over.
        items = [_item("retry-loop", FAILURE) for _ in range(8)]
        items += [_item("retry", SUCCESS) for _ in range(8)]
        await stub.Feedback(pb.FeedbackRequest(items=items))
        by_rate = pb.ScoreModifier(feedback=pb.FEEDBACK_SIGNAL_SUCCESS_RATE, weight=0.5, center=0.5)
        ranked = await stub.Search(_with(query, modifiers=[by_rate]))
        assert _ids(ranked)[0] == "retry"
        top = ranked.hits[0]
        explained = top.explanation
        assert explained.base_score == pytest.approx(top.explanation.dense_score)
        (contribution,) = explained.modifiers
        assert contribution.name == "feedback:success_rate"
        assert contribution.input == pytest.approx(9 / 10)
        assert contribution.effect == pytest.approx(1 + 0.5 * (9 / 10 - 0.5))
        assert top.score == pytest.approx(explained.base_score * contribution.effect)

        # A metadata field that is missing or a string never fails and never gives NaN.
        by_ctr = pb.ScoreModifier(metadata_key="ctr", op=pb.MODIFIER_OP_ADD, weight=1.0)
        hybrid = await stub.Search(pb.SearchRequest(text="network", modifiers=[by_ctr], top_k=4))
        scores = {h.node.id: h for h in hybrid.hits}
        assert all(math.isfinite(h.score) for h in hybrid.hits)
        assert scores["breaker"].explanation.modifiers[0].skipped
        assert scores["retry-loop"].score == pytest.approx(
            scores["retry-loop"].explanation.base_score + 0.30
        )
        contains = pb.ScoreModifier(weight=10.0, name="layer 3")
        contains.metadata_contains.key = "layers"
        contains.metadata_contains.value.number_value = 3
        nearest = await stub.Nearest(pb.NearestRequest(id="retry", modifiers=[contains]))
        assert _ids(nearest)[0] == "retry-loop"
        assert nearest.hits[0].explanation.modifiers[0].name == "layer 3"

        bad = pb.ScoreModifier(metadata_key="ctr", weight=math.inf)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Search(_with(query, modifiers=[bad]))
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert (refused.value.details() or "").startswith("modifiers[0].weight")


async def test_default_modifiers_apply_per_content_type_unless_skipped(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    defaults = {"fix_pattern": [{"metadataKey": "ctr", "op": "MODIFIER_OP_ADD", "weight": 5}]}
    settings = {**env, "SEMANTIC_SEARCH_SCORE_MODIFIERS": json.dumps(defaults)}
    async with running_search(settings, monkeypatch) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        await _load(stub)
        query = pb.SearchRequest(text="cache idempotent reads", mode=pb.SEARCH_MODE_DENSE)
        boosted = await stub.Search(query)
        assert _ids(boosted)[0] == "retry-loop"  # + 5 x 0.30
        assert boosted.hits[0].explanation.modifiers[0].name == "metadata:ctr"
        skipped = await stub.Search(_with(query, skip_default_modifiers=True))
        assert _ids(skipped)[0] == "cache"
        assert not skipped.hits[0].explanation.HasField("base_score")


async def _feedback_consumer(url: str) -> bool:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().consumer_info("SEMANTIC", "indexer-feedback")
        return True
    except NotFoundError:
        return False
    finally:
        await nc.close()


async def test_feedback_events_count_once_through_the_indexer(
    *,
    nc: NatsClient,
    env: dict[str, str],
    database_url: str,
    nats_server: Any,
    embedder_address: str,
    fp32_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with running_search(env, monkeypatch) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        await _load(stub)
        async with running_indexer(
            indexer_env(database_url, nats_server.url, embedder_address, fp32_model_dir),
            monkeypatch,
        ):
            await wait_for(lambda: _feedback_consumer(nats_server.url), what="the consumer")
            js = nc.jetstream()
            events = [epb.FeedbackEvent(item=_item("cache", SUCCESS, minutes=5)) for _ in range(3)]
            events.append(epb.FeedbackEvent(item=_item("late", FAILURE)))  # node comes later
            for event in [*events, events[0]]:  # the first one twice
                await js.publish(
                    "semantic.feedback._",
                    event.SerializeToString(),
                    headers={"Content-Type": "application/protobuf"},
                )
            late = cpb.Node(id="late", content_type="fix_pattern", title="Late", body="late")
            await stub.Upsert(pb.UpsertRequest(nodes=[late]), timeout=60)

            async def counted() -> bool:
                got = await stub.Get(pb.GetRequest(ids=["cache", "late"], include_feedback=True))
                found = {n.id: n.feedback for n in got.nodes}
                return found["cache"].applied == 3 and found["late"].applied == 1

            await wait_for(counted, timeout_s=120, what="the feedback events counted")
            got = await stub.Get(pb.GetRequest(ids=["cache", "late"], include_feedback=True))
            cache, late_node = got.nodes
            assert (cache.feedback.succeeded, cache.feedback.avg_minutes_saved) == (3, 5)
            assert (late_node.feedback.applied, late_node.feedback.failed) == (1, 1)


async def test_recommend_takes_modifiers_too(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_search(env, monkeypatch) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        await _load(stub)
        ask = pb.RecommendRequest(positive=[pb.RecommendExample(id="retry")], top_k=3)
        plain = await stub.Recommend(ask)
        assert not plain.hits[0].explanation.HasField("base_score")
        boost = pb.ScoreModifier(metadata_key="ctr", op=pb.MODIFIER_OP_ADD, weight=10.0)
        boosted = pb.RecommendRequest()
        boosted.CopyFrom(ask)
        boosted.modifiers.append(boost)
        reply = await stub.Recommend(boosted)
        top = reply.hits[0]
        assert top.node.id == "retry-loop"  # + 10 x 0.30
        explained = top.explanation
        assert explained.modifiers[0].name == "metadata:ctr"
        assert top.score == pytest.approx(explained.base_score + 3.0)
        parts = (explained.similarity, explained.engagement, explained.recency)
        parts += (explained.archetype_prior, explained.relations)
        assert explained.base_score == pytest.approx(sum(p.contribution for p in parts))
        by_id = {h.node.id: h for h in reply.hits}
        if "breaker" in by_id:  # a string ctr: skipped, never NaN
            assert by_id["breaker"].explanation.modifiers[0].skipped
