"""Behaviour of the embedded dev stack: PostgreSQL + pgvector and NATS JetStream."""

from __future__ import annotations

import socket
from pathlib import Path

import asyncpg
import nats
import pytest

from semantic.tools.devstack import (
    EmbeddedNats,
    EmbeddedPostgres,
    PostgresStartError,
    free_port,
)

_seen_databases: list[str] = []


async def test_fresh_database_computes_pgvector_cosine_distance(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CREATE EXTENSION vector")
        distance = await conn.fetchval("SELECT '[1,2,3]'::vector <=> '[1,2,4]'::vector")
    finally:
        await conn.close()

    assert isinstance(distance, float)
    assert distance == pytest.approx(0.00853986601633272)


@pytest.mark.parametrize("attempt", [1, 2])
async def test_each_test_gets_its_own_empty_database_dropped_afterwards(
    database_url: str, pg_server: EmbeddedPostgres, attempt: int
) -> None:
    name = database_url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(database_url)
    try:
        tables = await conn.fetchval(
            "SELECT count(*) FROM pg_tables"
            " WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        )
        await conn.execute("CREATE TABLE written_by_this_test (id int)")
        existing = await conn.fetch("SELECT datname FROM pg_database")
    finally:
        await conn.close()

    assert tables == 0
    assert name not in _seen_databases
    assert not set(_seen_databases) & {row["datname"] for row in existing}
    assert database_url == pg_server.url(name)
    _seen_databases.append(name)


def test_postgres_restarted_on_same_data_dir_keeps_rows(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg", port=free_port())
    try:
        server.start()
        server.psql("CREATE TABLE kept (id int); INSERT INTO kept VALUES (1), (2), (3)")
        server.stop()
        assert not server.is_running()

        server.start()
        assert server.psql("SELECT count(*) FROM kept").strip() == "3"
    finally:
        server.stop()


def test_postgres_killed_with_sigkill_recovers_committed_rows(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg", port=free_port())
    try:
        server.start()
        server.psql("CREATE TABLE kept (id int); INSERT INTO kept VALUES (1), (2)")
        server.kill()
        assert not server.is_running()
        assert (server.data_dir / "postmaster.pid").exists()

        server.start()
        assert server.psql("SELECT count(*) FROM kept").strip() == "2"
    finally:
        server.stop()


def test_postgres_that_cannot_bind_its_port_raises_with_the_log_tail(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = EmbeddedPostgres(tmp_path / "pg", port=taken.getsockname()[1], timeout=10)
        try:
            with pytest.raises(PostgresStartError, match="Address already in use") as caught:
                server.start()
        finally:
            server.stop()

    assert caught.value.log_path == server.log_path
    assert not server.is_running()


async def test_jetstream_message_published_is_consumed_back(nats_server: EmbeddedNats) -> None:
    client = await nats.connect(nats_server.url)
    try:
        js = client.jetstream()
        await js.add_stream(name="ROUNDTRIP", subjects=["roundtrip.>"])
        ack = await js.publish("roundtrip.one", b"hello")
        subscription = await js.pull_subscribe("roundtrip.one", durable="reader")
        [message] = await subscription.fetch(1, timeout=5)
        await message.ack()
        await js.delete_stream("ROUNDTRIP")
    finally:
        await client.close()

    assert ack.stream == "ROUNDTRIP"
    assert message.data == b"hello"


async def _publish(url: str, count: int) -> None:
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        await js.add_stream(name="KEPT", subjects=["kept.>"])
        for number in range(count):
            await js.publish("kept.item", str(number).encode())
    finally:
        await client.close()


async def _read_all(url: str) -> list[bytes]:
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        info = await js.stream_info("KEPT")
        subscription = await js.pull_subscribe("kept.item", stream="KEPT")
        messages = await subscription.fetch(info.state.messages, timeout=5)
    finally:
        await client.close()
    return [message.data for message in messages]


async def test_nats_restarted_on_same_dir_keeps_stream_messages(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats", port=free_port())
    try:
        server.start()
        await _publish(server.url, 3)
        server.stop()
        assert not server.is_running()

        server.start()
        assert await _read_all(server.url) == [b"0", b"1", b"2"]
    finally:
        server.stop()


async def test_nats_killed_with_sigkill_keeps_acknowledged_messages(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats", port=free_port())
    try:
        server.start()
        await _publish(server.url, 2)
        server.kill()
        assert not server.is_running()

        server.start()
        assert await _read_all(server.url) == [b"0", b"1"]
    finally:
        server.stop()
