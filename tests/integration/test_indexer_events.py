"""The indexer end to end on real NATS JetStream, PostgreSQL and embedder: events become
nodes with vectors, idempotently and in version order; poison goes to the dead-letter
subject with its reason; the stream and consumer are created or updated at start."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from google.protobuf import json_format
from indexer_kit import (
    consumer_state,
    content_event,
    dead_letters,
    node_versions,
    publish,
    publish_raw,
    running_indexer,
    vector_counts,
    wait_for,
    wait_for_streams,
    wait_handled,
)
from nats.aio.client import Client as NatsClient
from nats.js import api as js_api

from semantic.v1 import events_pb2


async def _vector_rows(database_url: str, node_id: str) -> list[tuple[str, str]]:
    """(ctid, xmin) of a node's vector rows: they change only when rows are rewritten."""
    conn = await asyncpg.connect(database_url)
    try:
        space = await conn.fetchval("SELECT space_id FROM semantic.space_aliases")
        rows = await conn.fetch(
            f"SELECT ctid::text AS c, xmin::text AS x FROM semantic.vectors_{int(space)}"
            " WHERE node_id = $1 ORDER BY name, chunk",
            node_id,
        )
        return [(r["c"], r["x"]) for r in rows]
    finally:
        await conn.close()


async def _node(database_url: str, node_id: str) -> asyncpg.Record | None:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchrow(
            "SELECT title, tags, metadata, version, content_hash FROM semantic.nodes"
            " WHERE tenant = '' AND id = $1",
            node_id,
        )
    finally:
        await conn.close()


async def test_events_become_nodes_with_vectors_in_version_order(
    nc: NatsClient, env: dict[str, str], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_indexer(env, monkeypatch):
        await wait_for_streams(env["NATS_URL"])
        await publish(nc, content_event("a", 1, title="Sourdough", body="Starter, flour, water."))
        await publish(
            nc, content_event("b", 1, title="TLS", body="Renew certificates early."), as_json=True
        )

        async def both_indexed() -> bool:
            counts = await vector_counts(database_url)
            return counts.get("a", 0) > 0 and counts.get("b", 0) > 0

        await wait_for(both_indexed, what="both nodes with vectors")
        assert await node_versions(database_url) == {"a": 1, "b": 1}
        before = await _vector_rows(database_url, "a")
        first = await _node(database_url, "a")
        assert first is not None

        # Metadata only: the node row is updated in place, its vectors are not rewritten.
        await publish(
            nc,
            content_event(
                "a", 2, title="Sourdough", body="Starter, flour, water.", tags=("baking",)
            ),
        )
        # An older version arriving late changes nothing.
        await publish(nc, content_event("b", 0 + 1, title="stale", body="old"))
        await publish(nc, content_event("b", 3, title="TLS", body="Automate renewal with ACME."))
        late = await publish(nc, content_event("b", 2, title="older", body="must not win"))

        async def settled() -> bool:
            return await node_versions(database_url) == {"a": 2, "b": 3}

        await wait_for(settled, what="versions 2 and 3")
        await wait_handled(env["NATS_URL"], late)  # the late, older event was handled too
        second = await _node(database_url, "a")
        assert second is not None
        assert list(second["tags"]) == ["baking"]
        assert second["content_hash"] == first["content_hash"]
        assert await _vector_rows(database_url, "a") == before
        b = await _node(database_url, "b")
        assert b is not None
        assert (b["title"], b["version"]) == ("TLS", 3)

        # Delete by slug-less id; the vectors go with the node; an older upsert stays out.
        await publish(nc, content_event("a", 5, delete=True))
        late = await publish(nc, content_event("a", 4, title="resurrected?", body="no"))

        async def deleted() -> bool:
            return "a" not in await node_versions(database_url)

        await wait_for(deleted, what="node a deleted")
        await wait_handled(env["NATS_URL"], late)
        assert "a" not in await node_versions(database_url)
        assert "a" not in await vector_counts(database_url)
    assert await dead_letters(env["NATS_URL"]) == []


async def test_poison_events_are_dead_lettered_with_their_reason(
    nc: NatsClient, env: dict[str, str], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**env, "SEMANTIC_INDEXER_MAX_EVENT_BYTES": "4096"}
    async with running_indexer(env, monkeypatch):
        await wait_for_streams(env["NATS_URL"])
        await publish_raw(nc, "semantic.content._.page", b"\xff\x00 not protobuf")
        await publish_raw(
            nc,
            "semantic.content._.page",
            b'{"eventId": "j1", "op": "NOPE"}',
            {"Content-Type": "application/json"},
        )
        zero = content_event("v0", 1, title="t", body="b")
        zero.version = 0
        await publish(nc, zero)
        await publish(nc, content_event("big", 1, title="t", body="word " * 2000))
        wrong_tenant = content_event("w", 1, title="t", body="b", tenant="acme")
        await publish_raw(nc, "semantic.content.other.page", wrong_tenant.SerializeToString())
        no_type = content_event("nt", 1, title="t", body="b", content_type="")
        await publish_raw(nc, "semantic.content._._", no_type.SerializeToString())
        await publish(nc, content_event("good", 1, title="Good", body="A valid event."))

        async def five_dead() -> bool:
            return len(await dead_letters(env["NATS_URL"])) >= 6

        await wait_for(five_dead, what="six dead letters")

        async def good_indexed() -> bool:
            return (await vector_counts(database_url)).get("good", 0) > 0

        await wait_for(good_indexed, what="the valid event")
    letters = await dead_letters(env["NATS_URL"])
    reasons = sorted(h["Semantic-Dlq-Reason"] for _, h, _ in letters)
    assert reasons == sorted(
        ["decode_error", "decode_error", "invalid", "too_large", "tenant_mismatch", "invalid"]
    )
    by_reason = {h["Semantic-Dlq-Reason"]: (s, h, p) for s, h, p in letters}
    subject, headers, payload = by_reason["tenant_mismatch"]
    assert subject == "semantic.dlq.content.other.page"
    assert headers["Semantic-Original-Subject"] == "semantic.content.other.page"
    assert payload == wrong_tenant.SerializeToString()  # the original, unchanged
    details = " ".join(h["Semantic-Dlq-Detail"] for _, h, _ in letters)
    assert "version" in details
    assert "content_type" in details
    assert await node_versions(database_url) == {"good": 1}


async def test_numbers_too_large_for_a_double_are_dead_lettered_and_the_loops_live_on(
    nc: NatsClient, env: dict[str, str], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A JSON integer of 400 digits (valid JSON) in a number field made the JSON parser
    raise OverflowError, which escaped the consumer loop and ended it without a word: three
    such events stopped the three content loops. Each is an invalid event now, dead-lettered
    naming its field, and the events after them are applied."""
    huge = "9" * 400
    json_headers = {"Content-Type": "application/json"}
    async with running_indexer(env, monkeypatch):
        await wait_for_streams(env["NATS_URL"])
        for i in range(4):
            await publish_raw(
                nc,
                "semantic.content._.page",
                (
                    f'{{"eventId": "big{i}", "op": "CONTENT_OP_UPSERT", "version": 1,'
                    f' "node": {{"id": "big{i}", "contentType": "page", "title": "t",'
                    f' "metadata": {{"n": {huge}}}}}}}'
                ).encode(),
                json_headers,
            )
        await publish_raw(
            nc,
            "semantic.user._",
            (
                '{"eventId": "u-big", "userId": "u1", "nodeId": "good",'
                f' "action": "USER_ACTION_VIEW", "weight": {huge}}}'
            ).encode(),
            json_headers,
        )
        await publish(nc, content_event("good", 1, title="Good", body="A valid event."))

        async def all_dead() -> bool:
            return len(await dead_letters(env["NATS_URL"])) >= 5

        await wait_for(all_dead, what="five dead letters")

        async def good_indexed() -> bool:
            return (await vector_counts(database_url)).get("good", 0) > 0

        await wait_for(good_indexed, what="the valid event after them")
    letters = await dead_letters(env["NATS_URL"])
    assert (
        sorted(h["Semantic-Dlq-Reason"] for _, h, _ in letters)
        == ["decode_error"] + ["invalid"] * 4
    ), letters
    details = sorted(h["Semantic-Dlq-Detail"] for _, h, _ in letters)
    assert sum("node.metadata.n" in d for d in details) == 4, details
    assert any("weight" in d for d in details), details
    assert await node_versions(database_url) == {"good": 1}


async def test_a_heavy_event_does_not_hold_back_the_events_fetched_with_it(
    nc: NatsClient, env: dict[str, str], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Published while no indexer runs, one batch: a large body first, then three small
    events of other nodes. The small ones are written before the large one is embedded
    (their transaction is earlier), not after it in one transaction with it."""
    async with running_indexer(env, monkeypatch):
        await wait_for_streams(env["NATS_URL"])  # the streams exist; nothing is consumed
    heavy_body = " ".join(f"paragraph {i} about the refund policy and returns" for i in range(150))
    await publish(nc, content_event("heavy", 1, title="Heavy", body=heavy_body))
    for name in ("l1", "l2", "l3"):
        await publish(nc, content_event(name, 1, title=name, body="A short note."))
    heavy_env = {**env, "SEMANTIC_INDEXER_HEAVY_EVENT_BYTES": "2000"}
    async with running_indexer(heavy_env, monkeypatch):

        async def all_written() -> bool:
            return set(await node_versions(database_url)) == {"heavy", "l1", "l2", "l3"}

        await wait_for(all_written, what="the four events")
    conn = await asyncpg.connect(database_url)
    try:
        stamps = dict(await conn.fetch("SELECT id, updated_at FROM semantic.nodes"))
    finally:
        await conn.close()
    assert all(stamps[name] < stamps["heavy"] for name in ("l1", "l2", "l3")), stamps


async def test_stream_and_consumer_are_created_or_updated_at_start(
    nc: NatsClient, env: dict[str, str], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    js = nc.jetstream()
    # A stale configuration from an older deployment: limits retention, one subject, and an
    # event published before the upgrade that nobody has acked yet.
    await js.add_stream(name="SEMANTIC", subjects=["semantic.content.>"], max_age=60)
    await js.add_consumer(
        "SEMANTIC",
        js_api.ConsumerConfig(
            name="indexer",
            durable_name="indexer",
            ack_policy=js_api.AckPolicy.EXPLICIT,
            ack_wait=5,
            filter_subject="semantic.content.>",
        ),
    )
    await publish(nc, content_event("kept", 1, title="Kept", body="Published before the upgrade."))
    env = {**env, "SEMANTIC_INDEXER_ACK_WAIT_S": "45"}
    async with running_indexer(env, monkeypatch):
        await wait_for_streams(env["NATS_URL"])

        async def updated() -> bool:
            info = await js.consumer_info("SEMANTIC", "indexer")
            stream = await js.stream_info("SEMANTIC")
            return (
                info.config.ack_wait == 45
                and stream.config.retention == js_api.RetentionPolicy.INTEREST
            )

        await wait_for(updated, what="the consumer's ack_wait and the stream's retention updated")
        stream = await js.stream_info("SEMANTIC")
        assert sorted(stream.config.subjects or []) == [
            "semantic.content.>",
            "semantic.feedback.>",
            "semantic.user.>",
        ]
        assert stream.config.max_age == 168 * 3600
        dlq = await js.stream_info("SEMANTIC_DLQ")
        assert dlq.config.subjects == ["semantic.dlq.>"]
        assert dlq.config.retention == js_api.RetentionPolicy.LIMITS

        # The event from before the change was kept, applied, and then left the stream.
        async def applied_and_gone() -> bool:
            state = (await js.stream_info("SEMANTIC")).state
            return await node_versions(database_url) == {"kept": 1} and state.messages == 0

        await wait_for(applied_and_gone, what="the old event applied and removed once acked")
    # A second start with the same settings changes nothing and fails nothing.
    async with running_indexer(env, monkeypatch):
        await wait_for_streams(env["NATS_URL"])
        stream = await js.stream_info("SEMANTIC")
        assert stream.config.retention == js_api.RetentionPolicy.INTEREST
    # An operator who wants the events kept for replay sets limits retention back.
    env = {**env, "SEMANTIC_INDEXER_STREAM_RETENTION": "limits"}
    async with running_indexer(env, monkeypatch):
        await wait_for_streams(env["NATS_URL"])

        async def limits() -> bool:
            stream = await js.stream_info("SEMANTIC")
            return stream.config.retention == js_api.RetentionPolicy.LIMITS

        await wait_for(limits, what="the stream back on limits retention")
        await publish(nc, content_event("replay", 1, title="Replay", body="Kept after its ack."))

        async def applied() -> bool:
            return "replay" in await node_versions(database_url)

        await wait_for(applied, what="the event applied")
        assert (await js.stream_info("SEMANTIC")).state.messages == 1


async def test_an_event_failing_for_its_own_reason_is_dead_lettered_after_max_deliver(
    nc: NatsClient, env: dict[str, str], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_indexer(env, monkeypatch):  # SEMANTIC_INDEXER_MAX_DELIVER=3
        await wait_for_streams(env["NATS_URL"])
        await publish(nc, content_event("a", 1, title="A", body="first", slug="home"))

        async def a_indexed() -> bool:
            return "a" in await node_versions(database_url)

        await wait_for(a_indexed, what="node a")
        # Valid on its own, but the slug belongs to node a: it can never be applied.
        await publish(nc, content_event("b", 1, title="B", body="second", slug="home"))
        await publish(nc, content_event("c", 1, title="C", body="third"))

        async def one_dead() -> bool:
            return len(await dead_letters(env["NATS_URL"])) == 1

        await wait_for(one_dead, what="the conflicting event dead-lettered")
    [(subject, headers, _)] = await dead_letters(env["NATS_URL"])
    assert subject == "semantic.dlq.content._.page"
    assert headers["Semantic-Dlq-Reason"] == "max_deliver"
    assert headers["Semantic-Deliveries"] == "3"
    assert "slug" in headers["Semantic-Dlq-Detail"]
    assert await node_versions(database_url) == {"a": 1, "c": 1}


async def test_user_events_on_nats_update_journeys_and_wait_for_late_nodes(
    nc: NatsClient, env: dict[str, str], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def user_event(node_id: str, action: int) -> events_pb2.UserEvent:
        return events_pb2.UserEvent(
            event_id=str(uuid.uuid4()), user_id="u1", node_id=node_id, action=action
        )

    async def publish_user(event: events_pb2.UserEvent, *, as_json: bool = False) -> int:
        if as_json:
            payload = json_format.MessageToJson(event).encode()
            headers = {"Content-Type": "application/json", "Nats-Msg-Id": event.event_id}
        else:
            payload = event.SerializeToString()
            headers = {"Nats-Msg-Id": event.event_id}
        return (await nc.jetstream().publish("semantic.user._", payload, headers=headers)).seq

    env = {**env, "SEMANTIC_INDEXER_MAX_DELIVER": "20"}
    async with running_indexer(env, monkeypatch):
        await wait_for_streams(env["NATS_URL"])
        await publish(nc, content_event("a", 1, title="Sourdough", body="Starter and flour."))
        await publish(nc, content_event("b", 1, title="Rye", body="Dense rye loaves."))

        async def both() -> bool:
            counts = await vector_counts(database_url)
            return counts.get("a", 0) > 0 and counts.get("b", 0) > 0

        await wait_for(both, what="nodes a and b")
        await publish_user(user_event("a", events_pb2.USER_ACTION_VIEW))
        await publish_user(user_event("b", events_pb2.USER_ACTION_CLICK), as_json=True)
        await publish_user(user_event("late", events_pb2.USER_ACTION_LIKE))  # not indexed yet
        last = await publish_user(user_event("a", events_pb2.USER_ACTION_UNSPECIFIED))  # poison

        async def late_one_waits() -> bool:  # every user event handled but the late one
            info = await consumer_state(env["NATS_URL"], "indexer-users")
            delivered = info.delivered.stream_seq if info.delivered else 0
            return delivered >= last and info.num_pending == 0 and info.num_ack_pending == 1

        await wait_for(late_one_waits, what="the late node's user event to wait for a retry")
        await publish(nc, content_event("late", 1, title="Late", body="Arrives after its event."))

        async def tracked() -> bool:
            conn = await asyncpg.connect(database_url)
            try:
                return await conn.fetchval("SELECT count(*) FROM semantic.user_events") == 3
            finally:
                await conn.close()

        await wait_for(tracked, timeout_s=60, what="three user events recorded")
    conn = await asyncpg.connect(database_url)
    try:
        user = await conn.fetchrow("SELECT events, journey_sum FROM semantic.users")
        engagement = {
            r["node_id"]: (r["views"], r["clicks"], r["likes"])
            for r in await conn.fetch("SELECT * FROM semantic.node_engagement")
        }
    finally:
        await conn.close()
    assert user["events"] == 3
    assert user["journey_sum"] is not None
    assert engagement == {"a": (1, 0, 0), "b": (0, 1, 0), "late": (0, 0, 1)}
    [(subject, headers, _)] = await dead_letters(env["NATS_URL"])
    assert subject == "semantic.dlq.user._"
    assert headers["Semantic-Dlq-Reason"] == "invalid"
    assert "action" in headers["Semantic-Dlq-Detail"]


async def test_a_graceful_stop_mid_stream_loses_nothing(
    nc: NatsClient, env: dict[str, str], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**env, "SEMANTIC_INDEXER_BATCH_SIZE": "8"}
    async with running_indexer(env, monkeypatch):
        await wait_for_streams(env["NATS_URL"])
        for i in range(300):
            await publish(nc, content_event(f"g{i}", 1, title=f"Note {i}", body="Some words."))

        async def started() -> bool:
            return len(await node_versions(database_url)) > 0

        await wait_for(started, what="the first nodes")
    # SIGTERM-like stop while batches were in flight; the rest is still in the stream.
    stopped_with = len(await node_versions(database_url))
    assert stopped_with < 300
    async with running_indexer(env, monkeypatch):

        async def all_there() -> bool:
            return len(await node_versions(database_url)) == 300

        await wait_for(all_there, what="all 300 nodes after the restart")
    assert set((await vector_counts(database_url)).values()) == {1}
    assert await dead_letters(env["NATS_URL"]) == []
