"""Requests that cannot be decoded (corrupt wire format, bad UTF-8 in a proto3 string
field) get INVALID_ARGUMENT naming the request on all three services, on our methods and
on grpc's own (health, reflection), unary and streaming alike; the service keeps serving."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from indexer_kit import indexer_env, running_indexer, running_search
from indexer_kit import search_env as search_env_for

from semantic.tools.devstack.health import wait_serving
from semantic.tools.devstack.nats import EmbeddedNats
from semantic.tools.devstack.ports import free_port

CORRUPT = b"\xff\xff\xff\xff"
# Field 1 (a string in each request below) holding two bytes that are not UTF-8.
BAD_UTF8_FIELD_1 = b"\x0a\x02\xff\xfe"
# Field 2 of SearchRequest is the query text.
BAD_UTF8_FIELD_2 = b"\x12\x02\xff\xfe"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


async def _unary(channel: grpc.aio.Channel, method: str, payload: bytes) -> grpc.aio.AioRpcError:
    """The error a raw unary call gets (bytes sent as they are, no serializer)."""
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(payload, timeout=30)
    return caught.value


async def _streamed(channel: grpc.aio.Channel, method: str, payload: bytes) -> grpc.aio.AioRpcError:
    """The error a raw bidirectional stream gets after one message."""
    call = channel.stream_stream(method, request_serializer=None, response_deserializer=None)

    async def one() -> AsyncIterator[bytes]:
        yield payload

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in call(one(), timeout=30):
            pass
    return caught.value


def _invalid(error: grpc.aio.AioRpcError) -> None:
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    assert (error.details() or "").startswith("request: cannot be decoded"), error.details()


async def _still_serving(channel: grpc.aio.Channel) -> None:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), timeout=10
    )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture
def search_env(database_url: str, embedder_address: str, fp32_model_dir: Path) -> dict[str, str]:
    return search_env_for(database_url, embedder_address, fp32_model_dir)


async def test_the_search_service_refuses_undecodable_requests_as_invalid_argument(
    search_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_search(search_env, monkeypatch) as channel:
        for method in ("/semantic.v1.Search/Upsert", "/semantic.v1.Admin/ListSpaces"):
            _invalid(await _unary(channel, method, CORRUPT))
        _invalid(await _unary(channel, "/semantic.v1.Search/Search", BAD_UTF8_FIELD_2))
        _invalid(await _unary(channel, "/semantic.v1.Search/Get", BAD_UTF8_FIELD_1))
        _invalid(await _unary(channel, HEALTH_CHECK, CORRUPT))
        _invalid(await _streamed(channel, REFLECTION, CORRUPT))
        await _still_serving(channel)


async def test_the_embedder_refuses_undecodable_requests_as_invalid_argument(
    embedder_address: str,
) -> None:
    async with grpc.aio.insecure_channel(embedder_address) as channel:
        _invalid(await _unary(channel, "/semantic.v1.Embedder/Embed", CORRUPT))
        _invalid(await _unary(channel, "/semantic.v1.Embedder/Embed", BAD_UTF8_FIELD_1))
        _invalid(await _unary(channel, "/semantic.v1.Embedder/Info", CORRUPT))
        _invalid(await _streamed(channel, "/semantic.v1.Embedder/EmbedStream", BAD_UTF8_FIELD_1))
        _invalid(await _unary(channel, HEALTH_CHECK, BAD_UTF8_FIELD_1))
        await _still_serving(channel)


async def test_the_indexer_health_server_refuses_undecodable_requests_as_invalid_argument(
    database_url: str,
    nats_server: EmbeddedNats,
    embedder_address: str,
    fp32_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    env = {
        **indexer_env(database_url, nats_server.url, embedder_address, fp32_model_dir),
        "SEMANTIC_GRPC_PORT": str(port),
    }
    async with running_indexer(env, monkeypatch):
        address = f"127.0.0.1:{port}"
        await wait_serving(address, name="indexer", timeout_s=120)
        async with grpc.aio.insecure_channel(address) as channel:
            _invalid(await _unary(channel, HEALTH_CHECK, CORRUPT))
            _invalid(await _unary(channel, HEALTH_CHECK, BAD_UTF8_FIELD_1))
            _invalid(await _streamed(channel, REFLECTION, BAD_UTF8_FIELD_1))
            await _still_serving(channel)
