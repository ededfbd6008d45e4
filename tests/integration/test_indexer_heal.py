"""Vectors come back by themselves: the heal loop after the vector table is truncated,
Admin.Heal on demand, `semantic backfill`, and a database replaced by an empty one."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import asyncpg
import pytest
from indexer_kit import (
    content_event,
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

from semantic.store.postgres import spaces
from semantic.tools.cli.main import main
from semantic.tools.devstack.postgres import EmbeddedPostgres
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

TOPICS = [
    ("Sourdough", "A starter, flour, water and salt; long fermentation."),
    ("TLS renewal", "Automate certificate renewal with ACME before expiry."),
    ("HTTP caching", "Cache-Control headers and ETags let clients reuse responses."),
    ("Fresh pasta", "Flour and eggs, rolled thin, cut into tagliatelle."),
    ("B-tree indexes", "Indexes speed up lookups; HNSW indexes find nearest vectors."),
]


async def _publish_corpus(nc: NatsClient, count: int, version: int = 1) -> None:
    for i in range(count):
        title, body = TOPICS[i % len(TOPICS)]
        await publish(nc, content_event(f"n{i}", version, title=f"{title} {i}", body=body))


async def _all_have_vectors(database_url: str, count: int) -> bool:
    counts = await vector_counts(database_url)
    return all(counts.get(f"n{i}", 0) > 0 for i in range(count))


async def _execute(database_url: str, sql: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _active_table(database_url: str) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        space = await conn.fetchval("SELECT space_id FROM semantic.space_aliases")
        return f"semantic.vectors_{int(space)}"
    finally:
        await conn.close()


async def test_the_heal_loop_restores_a_truncated_vector_table(
    nc: NatsClient, env: dict[str, str], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**env, "SEMANTIC_INDEXER_HEAL_INTERVAL_S": "0.5"}
    async with running_indexer(env, monkeypatch):
        await wait_for_streams(env["NATS_URL"])
        await _publish_corpus(nc, 20)
        await wait_for(lambda: _all_have_vectors(database_url, 20), what="20 indexed nodes")
        before = await vector_counts(database_url)
        await _execute(database_url, f"TRUNCATE {await _active_table(database_url)}")
        assert await vector_counts(database_url) == {}
        await wait_for(lambda: _all_have_vectors(database_url, 20), what="vectors healed")
        assert await vector_counts(database_url) == before


async def test_admin_heal_reports_and_repairs_missing_and_stale_vectors(
    nc: NatsClient,
    env: dict[str, str],
    database_url: str,
    fp32_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with running_indexer(env, monkeypatch):
        await wait_for_streams(env["NATS_URL"])
        await _publish_corpus(nc, 10)
        await wait_for(lambda: _all_have_vectors(database_url, 10), what="10 indexed nodes")
    table = await _active_table(database_url)
    await _execute(database_url, f"DELETE FROM {table} WHERE node_id IN ('n0', 'n1', 'n2')")
    await _execute(database_url, f"UPDATE {table} SET content_hash = 'old' WHERE node_id = 'n3'")
    search_env = {
        **env,
        "SEMANTIC_AUTH_MODE": "disabled",
        "SEMANTIC_SEARCH_TOKENIZER": str(fp32_model_dir / "tokenizer.json"),
    }
    async with running_search(search_env, monkeypatch) as channel:
        admin = search_pb2_grpc.AdminStub(channel)
        dry = await admin.Heal(pb.HealRequest(dry_run=True))
        assert (dry.scanned, dry.missing, dry.stale, dry.reembedded) == (10, 3, 1, 0)
        only_missing = await admin.Heal(pb.HealRequest(only_missing=True))
        assert (only_missing.missing, only_missing.reembedded) == (3, 3)
        healed = await admin.Heal(pb.HealRequest())
        assert (healed.missing, healed.stale, healed.reembedded, healed.failed) == (0, 1, 1, 0)
        again = await admin.Heal(pb.HealRequest())
        assert (again.missing, again.stale, again.reembedded) == (0, 0, 0)
    assert await _all_have_vectors(database_url, 10)


async def test_backfill_reembeds_with_a_summary(
    nc: NatsClient,
    env: dict[str, str],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with running_indexer(env, monkeypatch):
        await wait_for_streams(env["NATS_URL"])
        await _publish_corpus(nc, 12)
        await publish(
            nc, content_event("q1", 1, title="Quiz", body="Which bread?", content_type="quiz")
        )
        await wait_for(lambda: _all_have_vectors(database_url, 12), what="12 indexed nodes")
    table = await _active_table(database_url)
    await _execute(database_url, f"DELETE FROM {table} WHERE node_id IN ('n5', 'q1')")
    capsys.readouterr()
    # The command runs its own event loop: call it from a thread, as a shell would.
    assert await asyncio.to_thread(main, ["backfill", "--only-missing", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["scanned"], summary["missing"], summary["reembedded"]) == (13, 2, 2)
    command = ["backfill", "--type", "quiz", "--json", "--batch-size", "1"]
    assert await asyncio.to_thread(main, command) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["scanned"], summary["reembedded"]) == (1, 1)
    assert await _all_have_vectors(database_url, 12)
    assert (await vector_counts(database_url))["q1"] > 0


async def test_a_replaced_database_is_rebuilt_from_republished_events(
    nc: NatsClient,
    env: dict[str, str],
    database_url: str,
    pg_server: EmbeddedPostgres,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with running_indexer(env, monkeypatch):
        await wait_for_streams(env["NATS_URL"])
        await _publish_corpus(nc, 8)
        await wait_for(lambda: _all_have_vectors(database_url, 8), what="8 indexed nodes")
    name = database_url.rsplit("/", 1)[1].split("?", 1)[0]
    pg_server.drop_database(name)
    pg_server.create_database(name)  # an empty database under the same name
    async with running_indexer(env, monkeypatch):
        await wait_for_streams(env["NATS_URL"])
        for i in range(8):  # the publishers republish their content (new event ids)
            title, body = TOPICS[i % len(TOPICS)]
            event = content_event(f"n{i}", 1, title=f"{title} {i}", body=body)
            event.event_id = str(uuid.uuid4())
            await publish(nc, event)
        await wait_for(lambda: _all_have_vectors(database_url, 8), what="the rebuilt database")
    assert await node_versions(database_url) == {f"n{i}": 1 for i in range(8)}


async def test_a_space_switched_elsewhere_is_healed_at_once(
    nc: NatsClient, env: dict[str, str], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rollback (or any switch) made by another process activates a space whose vectors
    were made before the latest writes: stale, not missing. The heal loop sees the switch
    and heals it at once, not at its next interval (an hour here)."""
    env = {
        **env,
        "SEMANTIC_INDEXER_HEAL_INTERVAL_S": "3600",
        "SEMANTIC_INDEXER_COMPLETENESS_CHECK_S": "0.3",
    }
    interval_before = _heal_passes("interval")
    async with running_indexer(env, monkeypatch):
        await wait_for_streams(env["NATS_URL"])
        await _publish_corpus(nc, 10)
        await wait_for(lambda: _all_have_vectors(database_url, 10), what="10 indexed nodes")

        async def start_up_pass_done() -> bool:
            return _heal_passes("interval") > interval_before

        await wait_for(start_up_pass_done, what="the start-up heal pass")
        conn = await asyncpg.connect(database_url)
        try:
            # The space a rollback returns to: the same model, its vectors older than the
            # nodes for three of them.
            old = await conn.fetchval(
                "INSERT INTO semantic.embedding_spaces (model_id, model_sha256, dim, version,"
                " state) SELECT model_id, model_sha256, dim, version + 1, 'ready'"
                " FROM semantic.embedding_spaces WHERE id = 1 RETURNING id"
            )
            table = f"semantic.vectors_{int(old)}"
            await conn.execute(f"CREATE TABLE {table} (LIKE semantic.vectors_1 INCLUDING ALL)")
            await conn.execute(f"INSERT INTO {table} SELECT * FROM semantic.vectors_1")
            await conn.execute(
                f"UPDATE {table} SET content_hash = 'older' WHERE node_id IN ('n1', 'n2', 'n3')"
            )
            passes_before = _heal_passes("space_switched")
            await spaces.activate(conn, int(old))

            async def current() -> bool:
                stale = await conn.fetchval(
                    f"SELECT count(*) FROM {table} v JOIN semantic.nodes n"
                    " ON n.tenant = v.tenant AND n.id = v.node_id"
                    " WHERE v.content_hash <> n.content_hash"
                )
                return int(stale) == 0

            await wait_for(current, timeout_s=60, what="the switched-to space healed")

            async def counted() -> bool:  # the pass counts itself once its report is in
                return _heal_passes("space_switched") > passes_before

            await wait_for(counted, timeout_s=30, what="the pass counted as space_switched")
        finally:
            await conn.close()


def _heal_passes(trigger: str) -> float:
    value = REGISTRY.get_sample_value("semantic_indexer_heal_passes_total", {"trigger": trigger})
    return value or 0.0
