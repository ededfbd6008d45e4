"""Reads survive a PostgreSQL crash, end to end: a loop of dense Search (with and without
content-type and tag filters) and Nearest runs against a search service with its local index
while PostgreSQL is killed with SIGKILL and started again, and on until the indexer has
applied everything the outage held back; ContentEvents are published to NATS while it is
down.

Asserted: no read fails at any point of the loop; the answers given while PostgreSQL was
down are flagged degraded and find at least 0.95 of the normal answers' top 10; after the
restart the service answers normally by itself, and every event published during the
outage is applied by the indexer (version, title, body and vectors of the new content)
and none is dead-lettered: the events wait in JetStream until the database is back. Real processes
and servers throughout: a PostgreSQL of the test's own, NATS JetStream, the embedder, the
indexer (a process) and the search service (in this event loop)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import numpy as np
import pytest
from indexer_kit import (
    WORDS,
    content_event,
    dead_letters,
    indexer_env,
    publish,
    running_search,
    search_env,
    wait_for,
    wait_for_streams,
)
from nats.aio.client import Client as NatsClient

from semantic.tools.devstack.nats import EmbeddedNats
from semantic.tools.devstack.ports import free_port
from semantic.tools.devstack.postgres import EmbeddedPostgres
from semantic.tools.devstack.service import ServiceProcess
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

LOOP_S = 600.0
"""The longest the query loop runs if the test's own waits never end it (a safety stop, not
a bound on anything: the waits below time out first)."""
AFTER_RESTART = 5
"""Whole rounds answered normally after the restart before the loop may end."""
NODES = 300
DURING = 60
"""Events published while PostgreSQL is down: half update existing nodes, half add new."""
TOP_K = 10
TYPES = ("page", "post", "note")


def _text(i: int, version: int) -> tuple[str, str]:
    rng = np.random.default_rng(i * 100 + version)
    words = [WORDS[j] for j in rng.integers(0, len(WORDS), 12)]
    return f"n{i} v{version} " + " ".join(words[:3]), " ".join(words)


def _event(i: int, version: int) -> Any:
    title, body = _text(i, version)
    return content_event(
        f"n{i}",
        version,
        title=title,
        body=body,
        content_type=TYPES[i % 3],
        tags=("even" if i % 2 == 0 else "odd", f"g{i % 5}"),
    )


@dataclass
class Loop:
    """The query loop's record: failures, degraded and normal answers."""

    failures: list[str] = field(default_factory=list)
    degraded: list[float] = field(default_factory=list)  # recall@10 of each degraded answer
    normal_rounds: int = 0
    degraded_rounds: int = 0
    rounds_after_restart: int = 0


@pytest.fixture
def crashing_postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own (it gets killed)."""
    server = EmbeddedPostgres(tmp_path / "pg", port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def _applied(dsn: str, expected: dict[str, tuple[int, str, str]]) -> bool:
    """Every expected node has its version, title and body, and vectors of that content."""
    try:
        conn = await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError):
        return False
    try:
        space = await conn.fetchval(
            "SELECT space_id FROM semantic.space_aliases WHERE name = 'active'"
        )
        rows = await conn.fetch(
            "SELECT n.id, n.version, n.title, n.body,"
            f" (SELECT count(*) FROM semantic.vectors_{int(space)} v WHERE v.tenant = n.tenant"
            "   AND v.node_id = n.id AND v.content_hash = n.content_hash) AS fresh,"
            f" (SELECT count(*) FROM semantic.vectors_{int(space)} v WHERE v.tenant = n.tenant"
            "   AND v.node_id = n.id) AS total"
            " FROM semantic.nodes n"
        )
    except asyncpg.PostgresError:
        return False
    finally:
        await conn.close()
    found = {r["id"]: (r["version"], r["title"], r["body"]) for r in rows}
    vectors_ok = all(r["fresh"] == r["total"] > 0 for r in rows)
    return found == expected and vectors_ok


async def test_dense_reads_never_fail_through_a_postgresql_crash_and_events_wait(
    *,
    crashing_postgres: EmbeddedPostgres,
    nats_server: EmbeddedNats,
    nc: NatsClient,
    embedder_address: str,
    fp32_model_dir: Path,
    service_starter: Callable[[str, dict[str, str]], ServiceProcess],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    crashing_postgres.create_database("fault")
    dsn = crashing_postgres.url("fault")
    search_settings = {
        **search_env(dsn, embedder_address, fp32_model_dir),
        "SEMANTIC_SEARCH_LOCAL_INDEX_DIR": str(tmp_path / "local-index"),
        "SEMANTIC_SEARCH_LOCAL_INDEX_SYNC_S": "0.2",
        "SEMANTIC_DATABASE_CHECK_INTERVAL_S": "1",
        "SEMANTIC_DATABASE_RECOVERY_MAX_BACKOFF_S": "1",
    }
    expected: dict[str, tuple[int, str, str]] = {}
    for i in range(NODES):
        title, body = _text(i, 1)
        expected[f"n{i}"] = (1, title, body)

    async with running_search(search_settings, monkeypatch) as channel:
        indexer = service_starter(
            "semantic.indexer",
            {
                **indexer_env(dsn, nats_server.url, embedder_address, fp32_model_dir),
                "SEMANTIC_GRPC_PORT": str(free_port()),
                "SEMANTIC_DATABASE_CHECK_INTERVAL_S": "1",
                "SEMANTIC_DATABASE_RECOVERY_MAX_BACKOFF_S": "1",
            },
        )
        try:
            await indexer.wait_serving(timeout_s=120)
            await wait_for_streams(nats_server.url)
            for i in range(NODES):
                await publish(nc, _event(i, 1))
            await wait_for(lambda: _applied(dsn, expected), timeout_s=300, what="the corpus")
            await _crash_and_recover(channel, crashing_postgres, nc, dsn, expected)
            assert indexer.returncode is None  # the indexer rode the outage out
        finally:
            indexer.stop()
    assert await dead_letters(nats_server.url) == []


async def _crash_and_recover(
    channel: grpc.aio.Channel,
    postgres: EmbeddedPostgres,
    nc: NatsClient,
    dsn: str,
    expected: dict[str, tuple[int, str, str]],
) -> None:
    stub = search_pb2_grpc.SearchStub(channel)
    admin = search_pb2_grpc.AdminStub(channel)

    async def caught_up() -> bool:
        report = await admin.HealthReport(pb.HealthReportRequest(), timeout=20)
        local = next(c for c in report.components if c.name == "local_index")
        return local.status == pb.COMPONENT_STATUS_OK and f"; {NODES} nodes;" in local.detail

    await wait_for(caught_up, timeout_s=120, what="the local index caught up")

    # The queries: stored vectors of some nodes, moved a little, with and without filters;
    # Nearest by id and by slug-less id with a type filter.
    got = await stub.Get(
        pb.GetRequest(ids=[f"n{i}" for i in range(0, 240, 12)], include_vectors=True)
    )
    rng = np.random.default_rng(3)
    filters = [
        cpb.Filter(),
        cpb.Filter(content_types=["post"]),
        cpb.Filter(tags_any=["g1", "g2"], tags_none=["odd"]),
    ]
    searches = []
    for k, node in enumerate(got.nodes):
        base = np.frombuffer(node.vectors[0].vector.packed, dtype="<f4")
        moved = (base + rng.normal(0, 0.02, base.size)).astype("<f4")
        vector = cpb.Vector(packed=moved.tobytes(), dim=moved.size)
        searches.append(
            pb.SearchRequest(
                vector=vector, mode=pb.SEARCH_MODE_DENSE, top_k=TOP_K, filter=filters[k % 3]
            )
        )
    nearest = [pb.NearestRequest(id=f"n{i}", top_k=TOP_K) for i in range(0, 60, 6)]
    nearest.append(pb.NearestRequest(id="n7", top_k=TOP_K, content_types=["note"]))
    normal_search = [[h.node.id for h in (await stub.Search(r, timeout=20)).hits] for r in searches]
    normal_nearest = [
        [h.node.id for h in (await stub.Nearest(r, timeout=20)).hits] for r in nearest
    ]

    record = Loop()
    phase = {"restarted": False}

    def recall(normal: list[str], answer: list[str]) -> float:
        return len(set(normal) & set(answer)) / max(len(normal), 1)

    async def one_round() -> None:
        flagged = plain = 0
        calls: list[tuple[Any, list[str]]] = [
            *(
                (stub.Search(r, timeout=20), n)
                for r, n in zip(searches, normal_search, strict=True)
            ),
            *(
                (stub.Nearest(r, timeout=20), n)
                for r, n in zip(nearest, normal_nearest, strict=True)
            ),
        ]
        for call, normal in calls:
            try:
                reply = await call
            except grpc.aio.AioRpcError as exc:
                record.failures.append(f"{exc.code().name}: {exc.details()}")
                continue
            if reply.degraded:
                flagged += 1
                record.degraded.append(recall(normal, [h.node.id for h in reply.hits]))
            else:
                plain += 1
        if flagged == len(calls):
            record.degraded_rounds += 1
        elif plain == len(calls):
            record.normal_rounds += 1
            if phase["restarted"]:
                record.rounds_after_restart += 1

    done = asyncio.Event()

    async def query_loop() -> None:
        deadline = time.monotonic() + LOOP_S
        while not done.is_set() and time.monotonic() < deadline:
            await one_round()

    loop = asyncio.create_task(query_loop())
    try:
        await wait_for(
            lambda: _rounds_at_least(record, "normal_rounds", 3), what="normal rounds first"
        )
        await asyncio.to_thread(postgres.kill)
        try:
            await wait_for(
                lambda: _rounds_at_least(record, "degraded_rounds", 2),
                timeout_s=60,
                what="whole rounds answered degraded",
            )
            for i in range(DURING):  # while PostgreSQL is away: updates and new nodes
                node, version = (i, 2) if i % 2 == 0 else (NODES + i, 1)
                await publish(nc, _event(node, version))
                title, body = _text(node, version)
                expected[f"n{node}"] = (version, title, body)
            seen = record.degraded_rounds
            await wait_for(
                lambda: _rounds_at_least(record, "degraded_rounds", seen + 5),
                timeout_s=60,
                what="more degraded rounds with the events waiting",
            )
        finally:
            await asyncio.to_thread(postgres.start)
            phase["restarted"] = True
        await wait_for(
            lambda: _rounds_at_least(record, "rounds_after_restart", 2),
            timeout_s=120,
            what="normal answers again after the restart",
        )
        # Reads go on while the indexer applies what waited in JetStream, and a few
        # whole rounds more after that.
        await wait_for(
            lambda: _applied(dsn, expected), timeout_s=300, what="the outage's events applied"
        )
        seen = record.rounds_after_restart
        await wait_for(
            lambda: _rounds_at_least(record, "rounds_after_restart", seen + AFTER_RESTART),
            timeout_s=120,
            what="normal rounds after the events were applied",
        )
    finally:
        done.set()
        await loop

    assert record.failures == []
    assert record.degraded, "no answer came from the local index"
    assert sum(record.degraded) / len(record.degraded) >= 0.95
    assert len(expected) == NODES + DURING // 2


async def _rounds_at_least(record: Loop, name: str, count: int) -> bool:
    return bool(getattr(record, name) >= count)
