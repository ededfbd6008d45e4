"""Helpers of the indexer tests: publishing events, waiting for the database, running
the indexer in this event loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import nats
from google.protobuf import json_format
from nats.aio.client import Client as NatsClient
from nats.js import api as js_api
from nats.js.errors import NotFoundError

from semantic.indexer.app import serve
from semantic.indexer.settings import IndexerSettings
from semantic.tools.devstack.health import wait_serving as wait_until_serving
from semantic.tools.devstack.ports import free_port
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import events_pb2

WORDS = [  # a small vocabulary of four topics, for generated texts
    "flour",
    "water",
    "salt",
    "yeast",
    "oven",
    "bread",
    "pasta",
    "sauce",
    "tomato",
    "garlic",
    "server",
    "cache",
    "header",
    "certificate",
    "proxy",
    "request",
    "latency",
    "index",
    "vector",
    "query",
    "garden",
    "soil",
    "seed",
    "water",
    "leaf",
    "river",
    "mountain",
    "trail",
    "tent",
    "map",
    "compass",
    "budget",
    "invoice",
    "ledger",
    "tax",
    "account",
]


STREAMS = ("SEMANTIC", "SEMANTIC_DLQ")


def indexer_env(
    database_url: str, nats_url: str, embedder_address: str, model_dir: Path
) -> dict[str, str]:
    """Environment of an indexer for tests (fast heal loop off unless asked)."""
    return {
        "DATABASE_URL": database_url,
        "NATS_URL": nats_url,
        "SEMANTIC_GRPC_HOST": "127.0.0.1",
        "SEMANTIC_GRPC_PORT": "0",
        "SEMANTIC_METRICS_PORT": "0",
        "SEMANTIC_EMBEDDER_ADDRESS": embedder_address,
        "SEMANTIC_SEARCH_TOKENIZER": str(model_dir / "tokenizer.json"),
        "SEMANTIC_SEARCH_CHUNK_WINDOW": "64",
        "SEMANTIC_INDEXER_HEAL_INTERVAL_S": "0",
        "SEMANTIC_INDEXER_RETRY_INITIAL_S": "0.2",
        "SEMANTIC_INDEXER_RETRY_MAX_S": "2",
        "SEMANTIC_INDEXER_MAX_DELIVER": "3",
    }


@asynccontextmanager
async def running_indexer(env: dict[str, str], monkeypatch: Any) -> AsyncIterator[None]:
    """The indexer in this event loop until the block ends (then a graceful stop)."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(IndexerSettings(), stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


def search_env(database_url: str, embedder_address: str, model_dir: Path) -> dict[str, str]:
    """Environment of a search service for tests (auth off, small chunk window)."""
    return {
        "DATABASE_URL": database_url,
        "SEMANTIC_GRPC_HOST": "127.0.0.1",
        "SEMANTIC_METRICS_PORT": "0",
        "SEMANTIC_HTTP_HOST": "127.0.0.1",
        "SEMANTIC_HTTP_PORT": "0",
        "SEMANTIC_EMBEDDER_ADDRESS": embedder_address,
        "SEMANTIC_AUTH_MODE": "disabled",
        "SEMANTIC_SEARCH_TOKENIZER": str(model_dir / "tokenizer.json"),
        "SEMANTIC_SEARCH_CHUNK_WINDOW": "64",
    }


@asynccontextmanager
async def running_search(env: dict[str, str], monkeypatch: Any) -> AsyncIterator[grpc.aio.Channel]:
    """The search service in this event loop on a free port, SERVING; yields a channel."""
    from semantic.search.app import serve as serve_search
    from semantic.search.settings import SearchSettings

    port = free_port()
    for key, value in {**env, "SEMANTIC_GRPC_PORT": str(port)}.items():
        monkeypatch.setenv(key, value)
    stop = asyncio.Event()
    task = asyncio.create_task(serve_search(SearchSettings(), stop))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        await wait_until_serving(
            f"127.0.0.1:{port}", exit_code=lambda: None, name="search", timeout_s=60
        )
        yield channel
    finally:
        await channel.close()
        stop.set()
        await asyncio.wait_for(task, 60)


async def reset_streams(url: str) -> None:
    """Delete the indexer's streams so each test starts from nothing."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for name in STREAMS:
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(name)
    finally:
        await nc.close()


def content_event(
    node_id: str,
    version: int,
    *,
    title: str = "",
    body: str = "",
    content_type: str = "page",
    tenant: str = "",
    tags: tuple[str, ...] = (),
    metadata: dict[str, Any] | None = None,
    delete: bool = False,
    slug: str = "",
) -> events_pb2.ContentEvent:
    """A ContentEvent for one node."""
    node = cpb.Node(
        id=node_id,
        slug=slug,
        tenant=tenant,
        content_type=content_type,
        title=title,
        body=body,
        tags=list(tags),
    )
    if metadata:
        node.metadata.update(metadata)
    return events_pb2.ContentEvent(
        event_id=str(uuid.uuid4()),
        op=events_pb2.CONTENT_OP_DELETE if delete else events_pb2.CONTENT_OP_UPSERT,
        node=node,
        version=version,
        source="tests",
    )


def subject_for(event: events_pb2.ContentEvent) -> str:
    """The documented subject of a content event."""
    return f"semantic.content.{event.node.tenant or '_'}.{event.node.content_type or '_'}"


async def publish(nc: NatsClient, event: events_pb2.ContentEvent, *, as_json: bool = False) -> int:
    """Publish on JetStream the way a publisher should (Nats-Msg-Id = event_id); returns
    the event's stream sequence."""
    js = nc.jetstream()
    if as_json:
        payload = json_format.MessageToJson(event).encode()
        headers = {"Content-Type": "application/json", "Nats-Msg-Id": event.event_id}
    else:
        payload = event.SerializeToString()
        headers = {"Content-Type": "application/protobuf", "Nats-Msg-Id": event.event_id}
    return (await js.publish(subject_for(event), payload, headers=headers)).seq


async def publish_raw(
    nc: NatsClient, subject: str, payload: bytes, headers: dict[str, str] | None = None
) -> int:
    """Publish arbitrary bytes (for poison); returns the stream sequence."""
    return (await nc.jetstream().publish(subject, payload, headers=headers)).seq


async def wait_for(
    check: Callable[[], Awaitable[bool]], *, timeout_s: float = 60.0, what: str = "condition"
) -> None:
    """Poll ``check`` until it is true; fail with ``what`` after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        if await check():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def wait_for_streams(url: str, timeout_s: float = 60.0) -> None:
    """Wait until the indexer has created its streams and consumer."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()

        async def ready() -> bool:
            try:
                await js.consumer_info("SEMANTIC", "indexer")
                await js.stream_info("SEMANTIC_DLQ")
                return True
            except NotFoundError:
                return False

        await wait_for(ready, timeout_s=timeout_s, what="the indexer's streams")
    finally:
        await nc.close()


async def consumer_state(url: str, consumer: str = "indexer") -> js_api.ConsumerInfo:
    """What JetStream says of one of the indexer's durable consumers."""
    nc = await nats.connect(url)
    try:
        return await nc.jetstream().consumer_info("SEMANTIC", consumer)
    finally:
        await nc.close()


async def wait_handled(
    url: str, seq: int, *, consumer: str = "indexer", timeout_s: float = 60.0
) -> None:
    """Wait until ``consumer`` has settled every event up to stream sequence ``seq``
    (acked or dead-lettered): nothing left to deliver, nothing delivered awaiting an ack
    or a redelivery, and its ack floor at ``seq`` or past it."""

    async def settled() -> bool:
        info = await consumer_state(url, consumer)
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        return info.num_pending == 0 and info.num_ack_pending == 0 and floor >= seq

    await wait_for(settled, timeout_s=timeout_s, what=f"{consumer} to settle up to seq {seq}")


async def dead_letters(url: str) -> list[tuple[str, dict[str, str], bytes]]:
    """Every message of the DLQ stream: (subject, headers, payload)."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info("SEMANTIC_DLQ")
        except NotFoundError:
            return []
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            if info.state.messages == 0:
                break
            msg = await js.get_msg("SEMANTIC_DLQ", seq)
            out.append((msg.subject, dict(msg.headers or {}), msg.data or b""))
        return out
    finally:
        await nc.close()


async def node_versions(database_url: str) -> dict[str, int]:
    """id -> version of every node of the default tenant."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT id, version FROM semantic.nodes WHERE tenant = ''")
        return {r["id"]: r["version"] for r in rows}
    finally:
        await conn.close()


async def vector_counts(database_url: str) -> dict[str, int]:
    """node id -> vector rows in the active space."""
    conn = await asyncpg.connect(database_url)
    try:
        try:
            space = await conn.fetchval(
                "SELECT space_id FROM semantic.space_aliases WHERE name = 'active'"
            )
        except asyncpg.UndefinedTableError:  # the schema is not bootstrapped yet
            return {}
        if space is None:
            return {}
        rows = await conn.fetch(
            f"SELECT node_id, count(*) AS n FROM semantic.vectors_{int(space)} GROUP BY node_id"
        )
        return {r["node_id"]: r["n"] for r in rows}
    finally:
        await conn.close()


def as_json(value: Any) -> str:
    """Compact JSON (for metadata assertions)."""
    return json.dumps(value, sort_keys=True)


@dataclass
class WritePaths:
    """A search process that made the schema and the active space, and indexer write
    paths (a ChangeProcessor each) on pools of their own."""

    address: str
    embedder: Any
    pools: list[asyncpg.Pool]
    processors: tuple[Any, ...]


@asynccontextmanager
async def write_paths(
    database_url: str,
    embedder_address: str,
    starter: Callable[[str, dict[str, str]], Any],
    count: int = 1,
) -> AsyncIterator[WritePaths]:
    """``count`` indexer write paths (no chunking, no title vector) beside a search
    process on ``database_url``."""
    from semantic.common.embedder_client import EmbedderClient
    from semantic.core.spaces import ActiveSpaces
    from semantic.core.writer import ContentWriter, WriterConfig
    from semantic.indexer.processor import ChangeProcessor
    from semantic.search.settings import SearchSettings
    from semantic.store.postgres.db import create_pool, default_session_settings
    from semantic.store.postgres.nodes import PostgresNodes
    from semantic.store.postgres.spaces import PostgresSpaces

    text_config = SearchSettings.model_fields["search_text_config"].default
    service = starter(
        "semantic.search",
        {
            "DATABASE_URL": database_url,
            "SEMANTIC_EMBEDDER_ADDRESS": embedder_address,
            "SEMANTIC_AUTH_MODE": "disabled",
            "SEMANTIC_SEARCH_CHUNKING": "false",
            "SEMANTIC_LOG_LEVEL": "warning",
        },
    )
    await service.wait_serving()  # the schema and the active space exist
    embedder = EmbedderClient(embedder_address)
    pools = [
        await create_pool(
            database_url, min_size=1, max_size=4, session_settings=default_session_settings()
        )
        for _ in range(count)
    ]
    processors = tuple(
        ChangeProcessor(
            ActiveSpaces(PostgresSpaces(pool)),
            ContentWriter(
                PostgresNodes(pool, text_config=text_config),
                embedder,
                None,
                WriterConfig(chunking=False, title_vector=False),
            ),
        )
        for pool in pools
    )
    try:
        yield WritePaths(str(service.address), embedder, pools, processors)
    finally:
        for pool in pools:
            await pool.close()
        await embedder.close()
        service.stop()
