"""Fuzzing the real indexer process through NATS JetStream: arbitrary ContentEvents and
UserEvents (valid and hostile, as protobuf, protobuf-JSON, broken JSON and raw bytes) on
its subjects. After each batch every message ends acked or dead-lettered (the consumers
settle: no poison loop, nothing stuck), a dead letter carries a documented reason (a
max_deliver one only for a user event whose node is unknown, or a domain error: never a
crash's exception), and the indexer stays alive and SERVING; afterwards a valid event is
still indexed.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fuzz_events import Publication, publications
from fuzz_kit import EventBus, Shown, Target, describe, log_answer
from fuzz_strategies import fuzz_settings
from fuzz_values import Pools
from hypothesis import example, given
from hypothesis import strategies as st
from indexer_kit import STREAMS, indexer_env, node_versions, reset_streams, wait_for_streams

from semantic.tools.devstack import EmbeddedNats, EmbeddedPostgres
from semantic.v1 import events_pb2

pytestmark = pytest.mark.fuzz

REASONS = {"decode_error", "invalid", "too_large", "tenant_mismatch", "max_deliver"}
# max_deliver is a message failing for its own reason, retried, then given up on. That
# reason must be a known one: a user event's node not indexed (yet), or a domain error
# (for example a slug another node holds); any other exception is a bug.
UNKNOWN_NODE = re.compile(r"^node .* is unknown$")
DOMAIN_ERRORS = ("InvalidArgument:", "NotFound:", "AlreadyExists:", "PermissionDenied:")
# A batch settles in seconds (a user event of an unknown node: max_deliver 3 attempts,
# 0.2 s and 0.4 s apart); a minute without settling is a loop or a stuck consumer.
SETTLE_S = 60.0
# Minimal failing batches found by fuzz campaigns, published first on every run.
REGRESSIONS: list[list[Publication]] = [
    # A subject token holding a vertical tab or a form feed: NATS accepts and stores the
    # message, but the indexer never settles it (neither applied nor dead-lettered; it is
    # redelivered every ack wait, forever).
    [
        Publication(
            "semantic.content.a\x0bb._",
            {"Content-Type": "application/json"},
            b"[[[]]]",
            "content",
            "hostile_json",
        )
    ],
    [Publication("semantic.user.a\x0cb", {}, b"\x00", "user", "raw")],
]


@dataclass
class Indexer:
    target: Target
    bus: EventBus
    database_url: str
    broken: str | None = None


@pytest.fixture(scope="module")
def indexer(
    pg_server: EmbeddedPostgres,
    nats_server: EmbeddedNats,
    embedder_address: str,
    fp32_model_dir: Path,
    service_starter: Callable[[str, dict[str, str]], Any],
) -> Iterator[Indexer]:
    """The indexer process on a database of its own and fresh streams; texts over 20,000
    characters are invalid here (cheap to reject instead of costly to embed)."""
    name = f"fuzz_{uuid.uuid4().hex}"
    pg_server.create_database(name)
    database_url = pg_server.url(name)
    asyncio.run(reset_streams(nats_server.url))
    env = indexer_env(database_url, nats_server.url, embedder_address, fp32_model_dir)
    del env["SEMANTIC_GRPC_PORT"]  # the starter picks a free one, for the health checks
    env["SEMANTIC_INDEXER_MAX_TEXT_CHARS"] = "20000"
    process = service_starter("semantic.indexer", env)
    bus: EventBus | None = None
    target: Target | None = None
    try:
        asyncio.run(process.wait_serving())
        asyncio.run(wait_for_streams(nats_server.url))
        target = Target(
            "semantic.indexer", process.address, lambda: process.process.poll() is None, []
        )
        bus = EventBus(nats_server.url, STREAMS[0], STREAMS[1], ("indexer", "indexer-users"))
        yield Indexer(target, bus, database_url)
    finally:
        if bus is not None:
            bus.close()
        if target is not None:
            target.close()
        code = process.stop()
        asyncio.run(reset_streams(nats_server.url))
        pg_server.drop_database(name)
    assert code == 0, f"the indexer exited with {code} after the fuzz run"


def _bad_letter(letter: Any, publication: Publication) -> str | None:
    """Why a dead letter breaks the contract, or None."""
    if letter.reason not in REASONS:
        return f"undocumented reason {letter.reason!r}"
    if letter.reason != "max_deliver":
        return None
    if publication.kind == "user" and UNKNOWN_NODE.match(letter.detail):
        return None
    if letter.detail.startswith(DOMAIN_ERRORS):
        return None
    return "max_deliver after an unexpected failure"


def _publish_and_settle(indexer: Indexer, batch: list[Publication]) -> None:
    assert indexer.broken is None, f"the indexer is broken since: {indexer.broken}"
    bus = indexer.bus
    after = bus.last_dead_letter_seq()
    ours: dict[str, Publication] = {}
    for publication in batch:
        msg_id = f"fuzz-{uuid.uuid4()}"
        ours[msg_id] = publication
        bus.publish(
            publication.subject, publication.payload, {**publication.headers, "Nats-Msg-Id": msg_id}
        )
    shown = "\n".join(f"  {p.described()}" for p in batch)
    stuck = bus.wait_settled(SETTLE_S)
    if stuck is not None:
        indexer.broken = f"consumers not settled after {SETTLE_S} s: {stuck}\nbatch:\n{shown}"
        raise AssertionError(indexer.broken)
    try:
        indexer.target.assert_serving(f"after the batch:\n{shown}")
    except AssertionError as error:
        indexer.broken = str(error)
        raise
    for letter in bus.dead_letters(after):
        publication = ours.get(letter.msg_id)
        if publication is None:
            continue
        log_answer(f"indexer {publication.kind} {letter.reason} {letter.detail[:200]!r}")
        problem = _bad_letter(letter, publication)
        assert problem is None, (
            f"{problem}: {letter.reason} {letter.detail!r}\n"
            f"event: {publication.described()}\nbatch:\n{shown}"
        )


def test_every_event_is_acked_or_dead_lettered_and_the_indexer_keeps_serving(
    indexer: Indexer,
) -> None:
    pools = Pools()

    def check(batch: Shown) -> None:
        _publish_and_settle(indexer, batch.value)

    for case in reversed(REGRESSIONS):
        check = example(batch=Shown(case))(check)
    batches = st.lists(publications(pools), min_size=1, max_size=3).map(Shown)
    fuzz_settings()(given(batch=batches)(check))()

    # Not stuck: a valid event published after all that is indexed.
    event = events_pb2.ContentEvent(
        event_id=str(uuid.uuid4()),
        op=events_pb2.CONTENT_OP_UPSERT,
        version=1,
        source="tests",
    )
    event.node.id = f"canary-{uuid.uuid4().hex}"
    event.node.content_type = "page"
    event.node.title = "Canary"
    event.node.body = "Published after the fuzz run; must be indexed."
    indexer.bus.publish(
        "semantic.content._.page",
        event.SerializeToString(),
        {"Content-Type": "application/protobuf", "Nats-Msg-Id": event.event_id},
    )
    assert indexer.bus.wait_settled(SETTLE_S) is None, "the canary event was not settled"
    versions = asyncio.run(node_versions(indexer.database_url))
    assert versions.get(event.node.id) == 1, f"the canary was not indexed: {describe(event)}"
