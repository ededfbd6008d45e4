"""A database replaced, emptied or changed under running services heals without a restart.

Search and the indexer run as real processes while clients query and events flow; the
database is dropped and re-created empty (kept closed to connections for a while, as a
restore would). Meanwhile both report NOT_SERVING and clients get UNAVAILABLE, never
INTERNAL; then both come back by themselves, no event is dead-lettered, and republished
content restores every node and vector. Two lighter tests: the vector extension dropped
and re-created under a running search service (its connections' codecs go stale), and a
truncated vector table refilled by the heal the completeness check triggers.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import grpc
import nats
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from indexer_kit import (
    content_event,
    dead_letters,
    node_versions,
    publish,
    running_indexer,
    running_search,
    vector_counts,
    wait_for,
    wait_for_streams,
)
from nats.aio.client import Client as NatsClient
from prometheus_client import REGISTRY

from semantic.common.embedder_client import EmbedderClient
from semantic.store.postgres import spaces
from semantic.store.postgres.schema import bootstrap_schema
from semantic.tools.devstack.nats import EmbeddedNats
from semantic.tools.devstack.postgres import EmbeddedPostgres
from semantic.tools.devstack.service import ServiceProcess
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

NODES = 12
BODIES = [
    "A sourdough starter, flour, water and salt; long fermentation.",
    "Automate certificate renewal with ACME before expiry.",
    "Cache-Control headers and ETags let clients reuse responses.",
    "Flour and eggs, rolled thin, cut into tagliatelle.",
]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _service(module: str, env: dict[str, str]) -> ServiceProcess:
    """A service process on a free port, stopped (SIGTERM) at the end of the test."""
    return ServiceProcess.spawn(module, {**env, "SEMANTIC_LOG_LEVEL": "warning"})


class _Observed:
    """Status codes of client calls and health answers seen while the test runs."""

    def __init__(self) -> None:
        self.codes: dict[str, set[grpc.StatusCode]] = {}
        self.health: dict[str, set[int]] = {}
        self.last_health: dict[str, int] = {}

    def code(self, method: str, code: grpc.StatusCode) -> None:
        self.codes.setdefault(method, set()).add(code)

    def all_codes(self) -> set[grpc.StatusCode]:
        return set().union(*self.codes.values()) if self.codes else set()


async def _clients(channel: grpc.aio.Channel, seen: _Observed, stop: asyncio.Event) -> None:
    """Search, Get, Stats and Upsert in a loop, recording every status code."""
    stub = search_pb2_grpc.SearchStub(channel)
    calls: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("Search", lambda: stub.Search(pb.SearchRequest(text="flour", top_k=3), timeout=10)),
        ("Get", lambda: stub.Get(pb.GetRequest(ids=["n0"]), timeout=10)),
        ("Stats", lambda: stub.Stats(pb.StatsRequest(), timeout=10)),
        (
            "Upsert",
            lambda: stub.Upsert(
                pb.UpsertRequest(
                    nodes=[cpb.Node(id="direct", content_type="page", title="Direct", body="x")]
                ),
                timeout=10,
            ),
        ),
    ]
    while not stop.is_set():
        for method, call in calls:
            try:
                await call()
                seen.code(method, grpc.StatusCode.OK)
            except grpc.aio.AioRpcError as exc:
                seen.code(method, exc.code())
        await asyncio.sleep(0.02)  # pacing of the load, not a wait for a condition


async def _health(name: str, address: str, seen: _Observed, stop: asyncio.Event) -> None:
    """Poll grpc.health.v1 of one service, recording every status seen."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while not stop.is_set():
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
                seen.health.setdefault(name, set()).add(reply.status)
                seen.last_health[name] = reply.status
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.02)  # polling pace


async def _publisher(nc: NatsClient, latest: dict[str, int], stop: asyncio.Event) -> None:
    """New versions of the nodes, one after the other, for as long as the test runs."""
    step = 0
    while not stop.is_set():
        node = f"n{step % NODES}"
        latest[node] += 1
        body = BODIES[step % len(BODIES)]
        await publish(
            nc, content_event(node, latest[node], title=f"{node} v{latest[node]}", body=body)
        )
        step += 1
        await asyncio.sleep(0.05)  # the publishing rate


async def _replace_database(pg: EmbeddedPostgres, name: str) -> None:
    """Drop the database (terminating its sessions) and create it again, empty and not
    yet open to connections (a restore in progress). Should a service create it in the
    instant between the two statements, it is dropped again."""
    conn = await asyncpg.connect(pg.url("postgres"))
    try:
        for _ in range(10):
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            try:
                await conn.execute(f'CREATE DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
                return
            except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                continue
        raise AssertionError("could not replace the database")
    finally:
        await conn.close()


async def _open_database(pg: EmbeddedPostgres, name: str) -> None:
    conn = await asyncpg.connect(pg.url("postgres"))
    try:
        await conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
    finally:
        await conn.close()


async def _drained(url: str) -> bool:
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().consumer_info("SEMANTIC", "indexer")
        return (info.num_pending or 0) == 0 and (info.num_ack_pending or 0) == 0
    finally:
        await nc.close()


async def _restored(database_url: str, latest: dict[str, int]) -> bool:
    try:
        versions = await node_versions(database_url)
        vectors = await vector_counts(database_url)
    except (OSError, asyncpg.PostgresError):
        return False
    return all(versions.get(n) == v and vectors.get(n, 0) > 0 for n, v in latest.items())


@asynccontextmanager
async def _background(*coroutines: Awaitable[None]) -> AsyncIterator[None]:
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_replaced_database_heals_under_running_services_without_a_restart(
    nc: NatsClient,
    nats_server: EmbeddedNats,
    pg_server: EmbeddedPostgres,
    database_url: str,
    env: dict[str, str],
) -> None:
    # Without the local index: with it, search keeps answering dense reads while the
    # database is away (test_degraded_reads.py), and this test is about the refusals.
    env = {
        **env,
        "SEMANTIC_AUTH_MODE": "disabled",
        "SEMANTIC_DATABASE_CHECK_INTERVAL_S": "1",
        "SEMANTIC_DATABASE_RECOVERY_MAX_BACKOFF_S": "1",
        "SEMANTIC_SEARCH_LOCAL_INDEX": "false",
    }
    name = database_url.rsplit("/", 1)[1].split("?", 1)[0]
    search = _service("semantic.search", env)
    indexer = _service("semantic.indexer", env)
    try:
        await search.wait_serving()
        await indexer.wait_serving()
        await wait_for_streams(nats_server.url)
        latest = {f"n{i}": 1 for i in range(NODES)}
        for i in range(NODES):
            await publish(nc, content_event(f"n{i}", 1, title=f"n{i} v1", body=BODIES[i % 4]))
        await wait_for(lambda: _restored(database_url, latest), what="the first indexing")

        seen = _Observed()
        stop = asyncio.Event()
        channel = grpc.aio.insecure_channel(search.address)
        async with _background(
            _clients(channel, seen, stop),
            _health("search", search.address, seen, stop),
            _health("indexer", indexer.address, seen, stop),
            _publisher(nc, latest, stop),
        ):

            async def down() -> bool:
                return (
                    seen.last_health.get("search") == NOT_SERVING
                    and seen.last_health.get("indexer") == NOT_SERVING
                    and grpc.StatusCode.UNAVAILABLE in seen.codes.get("Search", set())
                )

            async def up() -> bool:
                return seen.last_health.get("search") == SERVING and (
                    seen.last_health.get("indexer") == SERVING
                )

            await _replace_database(pg_server, name)
            await wait_for(down, timeout_s=120, what="both services NOT_SERVING, UNAVAILABLE")
            await _open_database(pg_server, name)
            await wait_for(up, timeout_s=120, what="both services SERVING again")
            stop.set()
        await channel.close()

        # The publishers republish their content (new event ids, newest versions).
        for node, version in latest.items():
            event = content_event(node, version, title=f"{node} v{version}", body="republished")
            event.event_id = str(uuid.uuid4())
            await publish(nc, event)
        await wait_for(
            lambda: _restored(database_url, latest), timeout_s=120, what="every node restored"
        )
        await wait_for(lambda: _drained(nats_server.url), timeout_s=120, what="a drained consumer")

        assert seen.all_codes() <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, seen.codes
        assert seen.health["search"] == {SERVING, NOT_SERVING}
        assert seen.health["indexer"] == {SERVING, NOT_SERVING}
        assert await dead_letters(nats_server.url) == []
        async with grpc.aio.insecure_channel(search.address) as channel:
            stub = search_pb2_grpc.SearchStub(channel)
            node = cpb.Node(id="after", content_type="page", title="After", body="Fresh pasta")
            upserted = await stub.Upsert(pb.UpsertRequest(nodes=[node]))
            assert upserted.results[0].outcome in (
                pb.UPSERT_OUTCOME_CREATED,
                pb.UPSERT_OUTCOME_UPDATED,
            )
            got = await stub.Get(pb.GetRequest(ids=["after", "n0"]))
            assert sorted(n.id for n in got.nodes) == ["after", "n0"]
            found = await stub.Search(
                pb.SearchRequest(text="tagliatelle eggs", mode=pb.SEARCH_MODE_DENSE, top_k=3)
            )
            assert found.hits
            stats = await stub.Stats(pb.StatsRequest())
            assert stats.nodes_total >= NODES + 1
        assert search.process.poll() is None  # nothing restarted
        assert indexer.process.poll() is None
    finally:
        search.stop()
        indexer.stop()


async def test_connections_left_with_stale_codecs_heal_after_the_extension_is_recreated(
    env: dict[str, str], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**env, "SEMANTIC_AUTH_MODE": "disabled", "SEMANTIC_DATABASE_CHECK_INTERVAL_S": "0"}
    async with running_search(env, monkeypatch) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        nodes = [cpb.Node(id=f"d{i}", content_type="page", body=BODIES[i]) for i in range(4)]
        await stub.Upsert(pb.UpsertRequest(nodes=nodes))
        query = pb.SearchRequest(text="certificate expiry", mode=pb.SEARCH_MODE_DENSE, top_k=2)
        assert (await stub.Search(query)).hits[0].node.id == "d1"
        # Another process rebuilds the database under the running service: the schema,
        # the extension (new type OIDs) and the space. The service's pooled connections
        # stay open, their codecs and cached statements naming the old OIDs.
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("DROP SCHEMA semantic CASCADE; DROP EXTENSION vector")
        finally:
            await conn.close()
        await bootstrap_schema(database_url)
        embedder = EmbedderClient(env["SEMANTIC_EMBEDDER_ADDRESS"])
        try:
            model = await embedder.default_model()
        finally:
            await embedder.close()
        conn = await asyncpg.connect(database_url)
        try:
            await spaces.ensure_space(
                conn, model_id=model.model_id, model_sha256=model.sha256, dim=model.dim
            )
        finally:
            await conn.close()
        codes: set[grpc.StatusCode] = set()

        async def upserted_and_found() -> bool:
            try:
                await stub.Upsert(pb.UpsertRequest(nodes=nodes))
                reply = await stub.Search(query)
            except grpc.aio.AioRpcError as exc:
                codes.add(exc.code())
                return False
            return bool(reply.hits) and reply.hits[0].node.id == "d1"

        await wait_for(upserted_and_found, timeout_s=120, what="search working again")
        assert codes <= {grpc.StatusCode.UNAVAILABLE}, codes
        got = await stub.Get(pb.GetRequest(ids=["d0"], include_vectors=True))
        assert got.nodes[0].vectors


async def test_the_vector_extension_dropped_with_cascade_heals(
    env: dict[str, str], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``DROP EXTENSION vector CASCADE`` keeps the vector tables but takes their embedding
    column: the service makes the table again instead of retrying forever."""
    env = {**env, "SEMANTIC_AUTH_MODE": "disabled", "SEMANTIC_DATABASE_CHECK_INTERVAL_S": "0.2"}
    async with running_search(env, monkeypatch) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        nodes = [cpb.Node(id=f"x{i}", content_type="page", body=BODIES[i]) for i in range(4)]
        await stub.Upsert(pb.UpsertRequest(nodes=nodes))
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(
                "BEGIN; DROP EXTENSION vector CASCADE; CREATE EXTENSION vector; COMMIT"
            )
        finally:
            await conn.close()
        codes: set[grpc.StatusCode] = set()
        query = pb.SearchRequest(text="certificate expiry", mode=pb.SEARCH_MODE_DENSE, top_k=2)

        async def written_and_found() -> bool:
            try:
                new = [  # new content: the vectors went with the column, these make them
                    cpb.Node(id=f"x{i}", content_type="page", body=f"{BODIES[i]} (2)", version=2)
                    for i in range(4)
                ]
                await stub.Upsert(pb.UpsertRequest(nodes=new))
                reply = await stub.Search(query)
            except grpc.aio.AioRpcError as exc:
                codes.add(exc.code())
                return False
            return bool(reply.hits) and reply.hits[0].node.id == "x1"

        await wait_for(written_and_found, timeout_s=120, what="writes and search working again")
        assert codes <= {grpc.StatusCode.UNAVAILABLE}, codes


def _heal_passes(trigger: str) -> float:
    value = REGISTRY.get_sample_value("semantic_indexer_heal_passes_total", {"trigger": trigger})
    return value or 0.0


async def test_a_truncated_vector_table_is_refilled_by_the_triggered_heal(
    nc: NatsClient, env: dict[str, str], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The heal interval is an hour: only the start-up pass and triggered passes run here.
    env = {
        **env,
        "SEMANTIC_INDEXER_HEAL_INTERVAL_S": "3600",
        "SEMANTIC_INDEXER_COMPLETENESS_CHECK_S": "1",
    }
    interval_before, incomplete_before = _heal_passes("interval"), _heal_passes("incomplete")
    async with running_indexer(env, monkeypatch):
        await wait_for_streams(env["NATS_URL"])
        for i in range(20):
            await publish(nc, content_event(f"n{i}", 1, title=f"Note {i}", body=BODIES[i % 4]))

        async def indexed() -> bool:
            counts = await vector_counts(database_url)
            return all(counts.get(f"n{i}", 0) > 0 for i in range(20))

        async def start_up_pass_done() -> bool:
            return _heal_passes("interval") > interval_before

        await wait_for(indexed, what="20 indexed nodes")
        await wait_for(start_up_pass_done, what="the start-up heal pass")
        before = await vector_counts(database_url)
        conn = await asyncpg.connect(database_url)
        try:
            space = await conn.fetchval("SELECT space_id FROM semantic.space_aliases")
            await conn.execute(f"TRUNCATE semantic.vectors_{int(space)}")
        finally:
            await conn.close()
        await wait_for(indexed, timeout_s=120, what="the vectors healed")
        assert await vector_counts(database_url) == before
        assert _heal_passes("incomplete") > incomplete_before
        assert _heal_passes("interval") == interval_before + 1  # no interval pass did it
