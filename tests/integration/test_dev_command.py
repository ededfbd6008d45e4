"""`semantic dev` end to end: starts the embedded stack, prints endpoints, stops cleanly
on Ctrl-C, and a second run reuses the data folder."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import asyncpg
import grpc
import nats

from semantic.tools.devstack.ports import free_port
from semantic.v1 import (
    common_pb2,
    embedder_pb2,
    embedder_pb2_grpc,
    events_pb2,
    search_pb2,
    search_pb2_grpc,
)


def _start_dev(data_dir: Path, env_extra: dict[str, str]) -> subprocess.Popen[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "NATS_URL", "SEMANTIC_DATABASE_URL", "SEMANTIC_NATS_URL"}
    }
    env.update(env_extra)
    return subprocess.Popen(
        [sys.executable, "-m", "semantic.tools.cli.main", "dev", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


async def _wait_ready(process: subprocess.Popen[str]) -> list[str]:
    def read() -> list[str]:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line.rstrip())
            if line.strip() == "READY":
                return lines
        raise AssertionError("semantic dev exited before READY:\n" + "\n".join(lines))

    return await asyncio.wait_for(asyncio.to_thread(read), timeout=180)


async def _interrupt(process: subprocess.Popen[str], sig: int = signal.SIGINT) -> int:
    process.send_signal(sig)
    return await asyncio.to_thread(process.wait, 60)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return str(response.read().decode())


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _ports(model_dir: Path) -> dict[str, str]:
    return {
        "SEMANTIC_DEV_POSTGRES_PORT": str(free_port()),
        "SEMANTIC_DEV_NATS_PORT": str(free_port()),
        "SEMANTIC_DEV_NATS_MONITOR_PORT": "0",
        "SEMANTIC_DEV_EMBEDDER_PORT": str(free_port()),
        "SEMANTIC_DEV_EMBEDDER_METRICS_PORT": "0",
        "SEMANTIC_DEV_SEARCH_PORT": str(free_port()),
        "SEMANTIC_DEV_SEARCH_METRICS_PORT": "0",
        "SEMANTIC_DEV_HTTP_PORT": str(free_port()),
        "SEMANTIC_DEV_INDEXER_PORT": str(free_port()),
        "SEMANTIC_DEV_INDEXER_METRICS_PORT": "0",
        "SEMANTIC_EMBEDDER_MODEL_DIRS": str(model_dir),
        "SEMANTIC_SEARCH_TOKENIZER": str(model_dir / "tokenizer.json"),
        "SEMANTIC_EMBEDDER_INTRA_OP_THREADS": "1",
    }


async def test_dev_runs_the_stack_stops_on_ctrl_c_or_sigterm_and_reuses_data(
    tmp_path: Path, fp32_model_dir: Path
) -> None:
    ports = _ports(fp32_model_dir)
    pg_port = int(ports["SEMANTIC_DEV_POSTGRES_PORT"])
    nats_port = int(ports["SEMANTIC_DEV_NATS_PORT"])
    embedder_port = int(ports["SEMANTIC_DEV_EMBEDDER_PORT"])
    data_dir = tmp_path / "stack"
    process = _start_dev(data_dir, ports)
    try:
        output = await _wait_ready(process)
        endpoints = json.loads((data_dir / "endpoints.json").read_text())
        assert endpoints["nats_url"] == f"nats://127.0.0.1:{nats_port}"
        assert f"127.0.0.1:{pg_port}" in endpoints["database_url"]
        assert any(endpoints["nats_url"] in line for line in output)

        conn = await asyncpg.connect(endpoints["database_url"])
        try:
            assert await conn.fetchval("SELECT count(*) FROM semantic.schema_migrations") >= 1
            await conn.execute("CREATE TABLE public.kept (note text)")
            await conn.execute("INSERT INTO public.kept VALUES ('from the first run')")
        finally:
            await conn.close()
        assert endpoints["services"]["embedder"] == f"127.0.0.1:{embedder_port}"
        async with grpc.aio.insecure_channel(endpoints["services"]["embedder"]) as channel:
            reply = await embedder_pb2_grpc.EmbedderStub(channel).Embed(
                embedder_pb2.EmbedRequest(texts=["hello world"])
            )
            assert reply.dim == 384
        client = await nats.connect(endpoints["nats_url"])
        try:
            info = await client.jetstream().account_info()
            assert info is not None
            # A publisher's event is indexed by the stack's indexer and found by search.
            event = events_pb2.ContentEvent(
                event_id="dev-1",
                op=events_pb2.CONTENT_OP_UPSERT,
                version=1,
                node=common_pb2.Node(
                    id="welcome", content_type="page", title="Welcome", body="Sourdough bread"
                ),
            )
            await client.jetstream().publish("semantic.content._.page", event.SerializeToString())
        finally:
            await client.close()
        async with grpc.aio.insecure_channel(endpoints["services"]["search"]) as channel:
            search = search_pb2_grpc.SearchStub(channel)
            for _ in range(200):
                reply = await search.Search(search_pb2.SearchRequest(text="bread", top_k=1))
                if reply.hits:
                    break
                await asyncio.sleep(0.1)
            assert [h.node.id for h in reply.hits] == ["welcome"]
        http = endpoints["http"]
        assert http == f"http://127.0.0.1:{ports['SEMANTIC_DEV_HTTP_PORT']}"
        assert any(f"{http}/admin/vector-search" in line for line in output)
        found = json.loads(
            await asyncio.to_thread(_get, f"{http}/api/semantic/vector-search?q=bread&k=1")
        )
        assert [h["node"]["id"] for h in found["hits"]] == ["welcome"]
    finally:
        code = await _interrupt(process)
    assert code == 0
    assert not _listening(pg_port)
    assert not _listening(nats_port)
    assert not _listening(embedder_port)

    again = _start_dev(data_dir, ports)
    try:
        await _wait_ready(again)
        conn = await asyncpg.connect(endpoints["database_url"])
        try:
            assert await conn.fetchval("SELECT note FROM public.kept") == "from the first run"
        finally:
            await conn.close()
    finally:
        assert await _interrupt(again, signal.SIGTERM) == 0


async def test_dev_uses_external_database_and_nats_when_configured(
    tmp_path: Path, database_url: str, nats_server, fp32_model_dir: Path
) -> None:  # type: ignore[no-untyped-def]
    data_dir = tmp_path / "external"
    env = {**_ports(fp32_model_dir), "DATABASE_URL": database_url, "NATS_URL": nats_server.url}
    process = _start_dev(data_dir, env)
    try:
        await _wait_ready(process)
        assert not (data_dir / "postgres").exists()
        assert not (data_dir / "nats").exists()
        conn = await asyncpg.connect(database_url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM semantic.meta") == 1
        finally:
            await conn.close()
    finally:
        assert await _interrupt(process) == 0
