"""The indexer under faults, with real processes: 5,000 events while an indexer replica is
killed with SIGKILL and restarted, the embedder is stopped for a while and PostgreSQL is
restarted. At the end every node is there once, at its newest version, with vectors, and
the dead-letter stream holds exactly the poison that was sent. A second test checks that
two replicas share the work without doing any of it twice."""

from __future__ import annotations

import asyncio
import random
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import nats
import pytest
from indexer_kit import (
    content_event,
    dead_letters,
    publish,
    publish_raw,
    reset_streams,
    running_indexer,
    vector_counts,
    wait_for,
    wait_for_streams,
)
from nats.aio.client import Client as NatsClient
from nats.js.errors import NoStreamResponseError

from semantic.tools.devstack.nats import EmbeddedNats
from semantic.tools.devstack.ports import free_port
from semantic.tools.devstack.postgres import EmbeddedPostgres
from semantic.tools.devstack.service import ServiceProcess

NODES = 1000
VERSIONS = 5
WORDS = [
    "bread",
    "pasta",
    "cache",
    "index",
    "vector",
    "heart",
    "vitamin",
    "renewal",
    "certificate",
    "starter",
    "flour",
]


class Proc:
    """A service process we can stop, kill and start again on the same ports."""

    def __init__(self, module: str, env: dict[str, str], port: int | None = None) -> None:
        self.module = module
        self.port = port or free_port()
        self.metrics_port = free_port()
        self.env = {
            "SEMANTIC_METRICS_HOST": "127.0.0.1",
            "SEMANTIC_METRICS_PORT": str(self.metrics_port),
            "SEMANTIC_LOG_LEVEL": "warning",
            **env,
        }
        self.service: ServiceProcess | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return None if self.service is None else self.service.process

    async def start(self) -> None:
        self.service = ServiceProcess.spawn(self.module, self.env, port=self.port)
        await self.service.wait_serving()

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()

    def kill(self) -> None:
        assert self.service is not None
        self.service.kill()  # SIGKILL: no graceful anything

    def metric(self, name: str) -> dict[str, float]:
        """label text -> value of one counter family from /metrics."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            text = reply.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                key, value = line.rsplit(" ", 1)
                out[key[len(name) :]] = float(value)
        return out


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path / "pg", port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _indexer_env(dsn: str, nats_url: str, embedder: str, model_dir: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": dsn,
        "NATS_URL": nats_url,
        "SEMANTIC_EMBEDDER_ADDRESS": embedder,
        "SEMANTIC_SEARCH_TOKENIZER": str(model_dir / "tokenizer.json"),
        "SEMANTIC_INDEXER_HEAL_INTERVAL_S": "0",
        "SEMANTIC_INDEXER_RETRY_INITIAL_S": "0.2",
        "SEMANTIC_INDEXER_RETRY_MAX_S": "2",
        "SEMANTIC_INDEXER_ACK_WAIT_S": "10",
        "SEMANTIC_STARTUP_TIMEOUT_SECONDS": "120",
    }


async def _drained(js: nats.js.JetStreamContext) -> bool:
    info = await js.consumer_info("SEMANTIC", "indexer")
    return (info.num_pending or 0) == 0 and (info.num_ack_pending or 0) == 0


async def _state(dsn: str) -> tuple[dict[str, tuple[int, str, str]], dict[str, int]]:
    """Each node's (version, title, body), and its vector count when every vector row was
    made from the node's stored content."""
    conn = await asyncpg.connect(dsn)
    try:
        nodes = {
            r["id"]: (r["version"], r["title"], r["body"])
            for r in await conn.fetch("SELECT id, version, title, body FROM semantic.nodes")
        }
        space = await conn.fetchval("SELECT space_id FROM semantic.space_aliases")
        rows = await conn.fetch(
            "SELECT node_id, count(*) AS n, max(content_hash) AS h, min(content_hash) AS l"
            f" FROM semantic.vectors_{int(space)} GROUP BY node_id"
        )
        hashes = {
            r["id"]: r["content_hash"]
            for r in await conn.fetch("SELECT id, content_hash FROM semantic.nodes")
        }
        vectors = {
            r["node_id"]: r["n"] for r in rows if hashes.get(r["node_id"]) == r["h"] == r["l"]
        }
        return nodes, vectors
    finally:
        await conn.close()


async def _processed(dsn: str) -> int:
    try:
        conn = await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError):
        return 0
    try:
        return int(await conn.fetchval("SELECT coalesce(sum(version), 0) FROM semantic.nodes"))
    except asyncpg.PostgresError:
        return 0
    finally:
        await conn.close()


async def test_nothing_is_lost_or_applied_twice_under_faults(
    nc: NatsClient,
    nats_server: EmbeddedNats,
    own_postgres: EmbeddedPostgres,
    fp32_model_dir: Path,
) -> None:
    own_postgres.create_database("faults")
    dsn = own_postgres.url("faults")
    embedder = Proc(
        "semantic.embedder",
        {
            "SEMANTIC_EMBEDDER_MODEL_DIRS": str(fp32_model_dir),
            "SEMANTIC_EMBEDDER_INTRA_OP_THREADS": "1",
        },
    )
    await embedder.start()
    env = _indexer_env(dsn, nats_server.url, embedder.address, fp32_model_dir)
    replicas = [Proc("semantic.indexer", env), Proc("semantic.indexer", env)]
    try:
        for replica in replicas:
            await replica.start()
        await wait_for_streams(nats_server.url)

        rng = random.Random(5)
        events = [(f"n{i}", v) for i in range(NODES) for v in range(1, VERSIONS + 1)]
        rng.shuffle(events)  # versions of a node arrive in any order
        poison = 0
        newest: dict[str, tuple[int, str, str]] = {}
        for index, (node_id, version) in enumerate(events):
            words = " ".join(rng.choice(WORDS) for _ in range(8))
            if version == VERSIONS:
                newest[node_id] = (version, f"{node_id} v{version}", words)
            event = content_event(node_id, version, title=f"{node_id} v{version}", body=words)
            await publish(nc, event, as_json=index % 7 == 0)
            if index % 250 == 0:  # poison, interleaved: undecodable and invalid
                await publish_raw(nc, "semantic.content._.page", b"\x08\x96\x01garbage\xff")
                bad = content_event(f"bad{index}", 0, title="x", body="y")
                await publish(nc, bad)
                poison += 2

        # Fault 1: a replica is killed mid-stream and comes back.
        progress_at_faults = []
        await wait_for(lambda: _above(dsn, 1500), timeout_s=300, what="some progress")
        progress_at_faults.append(await _processed(dsn))
        replicas[0].kill()
        alone_from = await _processed(dsn)  # down until the other replica carried on alone
        await wait_for(lambda: _above(dsn, alone_from + 1), timeout_s=300, what="one replica")
        await replicas[0].start()
        # Fault 2: the embedder is down until the indexer ran into it, then back on the
        # same address.
        await wait_for(lambda: _above(dsn, 3000), timeout_s=300, what="more progress")
        progress_at_faults.append(await _processed(dsn))
        retries, dependency = "semantic_indexer_retries_total", '{kind="dependency"}'
        naks = await _counted(replicas, retries, dependency)
        embedder.stop()
        await wait_for(
            lambda: _counted_above(replicas, retries, naks, dependency),
            timeout_s=300,
            what="an event nak'ed while the embedder is down",
        )
        await embedder.start()
        # Fault 3: PostgreSQL restarts once the indexer noticed it was gone.
        await wait_for(lambda: _above(dsn, 4000), timeout_s=300, what="even more progress")
        progress_at_faults.append(await _processed(dsn))
        outages = await _counted(replicas, "semantic_database_outages_total")
        own_postgres.stop()
        await wait_for(
            lambda: _counted_above(replicas, "semantic_database_outages_total", outages),
            timeout_s=300,
            what="the database outage noticed",
        )
        own_postgres.start()

        js = nc.jetstream()
        await wait_for(lambda: _drained(js), timeout_s=600, what="the consumer drained")
        assert all(p < NODES * VERSIONS for p in progress_at_faults)  # faults hit mid-stream
        nodes, vectors = await _state(dsn)
        # Every node at its newest version, with that version's own title and body ...
        assert nodes == newest
        assert len(nodes) == NODES
        # ... and vectors made from that content (content hash of every row = the node's).
        assert set(vectors) == set(nodes)
        letters = await dead_letters(nats_server.url)
        assert len(letters) == poison
        reasons = sorted(h["Semantic-Dlq-Reason"] for _, h, _ in letters)
        assert reasons == sorted(["decode_error", "invalid"] * (poison // 2))
        for replica in replicas:
            assert replica.process is not None
            assert replica.process.poll() is None  # nothing crashed
    finally:
        for replica in replicas:
            replica.stop()
        embedder.stop()


async def _above(dsn: str, total_versions: int) -> bool:
    return await _processed(dsn) >= total_versions


async def _counted(replicas: list[Proc], name: str, labels: str | None = None) -> float:
    """The sum over the replicas of one counter (of its series with ``labels``, or all)."""

    def read() -> float:
        total = 0.0
        for replica in replicas:
            series = replica.metric(name)
            total += sum(v for k, v in series.items() if labels is None or k == labels)
        return total

    return await asyncio.to_thread(read)


async def _counted_above(
    replicas: list[Proc], name: str, before: float, labels: str | None = None
) -> bool:
    return await _counted(replicas, name, labels) > before


async def test_two_replicas_share_the_work_without_doing_any_twice(
    nc: NatsClient,
    nats_server: EmbeddedNats,
    database_url: str,
    embedder_address: str,
    fp32_model_dir: Path,
) -> None:
    env = {
        **_indexer_env(database_url, nats_server.url, embedder_address, fp32_model_dir),
        "SEMANTIC_INDEXER_BATCH_SIZE": "16",
    }
    replicas = [Proc("semantic.indexer", env), Proc("semantic.indexer", env)]
    try:
        for replica in replicas:
            await replica.start()
        await wait_for_streams(nats_server.url)
        for i in range(600):
            await publish(nc, content_event(f"r{i}", 1, title=f"Note {i}", body=WORDS[i % 11]))
        js = nc.jetstream()
        await wait_for(lambda: _drained(js), timeout_s=300, what="the consumer drained")
        per_replica = [r.metric("semantic_indexer_events_total") for r in replicas]
        created = [m.get('{kind="content",outcome="created"}', 0.0) for m in per_replica]
        handled = [sum(m.values()) for m in per_replica]
        assert sum(created) == 600
        assert sum(handled) == 600  # no event handled by both (no "unchanged" redelivery)
        assert all(count > 0 for count in created)  # both replicas took a share
    finally:
        for replica in replicas:
            replica.stop()


async def test_streams_lost_with_jetstream_data_are_made_again(
    nc: NatsClient, env: dict[str, str], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NATS restarted without its JetStream data: the streams and durable consumers are
    gone, fetches fail; the indexer makes them again and goes on consuming."""
    async with running_indexer(env, monkeypatch):
        await wait_for_streams(env["NATS_URL"])
        await publish(nc, content_event("before", 1, body="Renew certificates with ACME."))

        async def indexed(node_id: str) -> bool:
            return (await vector_counts(database_url)).get(node_id, 0) > 0

        await wait_for(lambda: indexed("before"), what="the first event indexed")
        await reset_streams(env["NATS_URL"])  # what a wiped JetStream folder leaves

        async def published_after() -> bool:
            try:
                await publish(nc, content_event("after", 1, body="Sourdough needs a starter."))
            except (NoStreamResponseError, TimeoutError):
                return False
            return True

        await wait_for(published_after, timeout_s=60, what="the stream made again")
        await wait_for(lambda: indexed("after"), timeout_s=60, what="the next event indexed")
