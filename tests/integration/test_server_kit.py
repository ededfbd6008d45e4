"""The gRPC server kit over a real loopback connection: health, reflection, error
mapping, metrics and graceful shutdown."""

import asyncio
import urllib.request
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from semantic.common import errors
from semantic.common.server import ServerKit, run_service
from semantic.tools.devstack.ports import free_port

SERVICE = "semantic.test.Probe"


async def _echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


async def _fail(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    if request == b"invalid":
        raise errors.InvalidArgument("texts[2]", "must not be empty")
    if request == b"missing":
        raise errors.NotFound("node", "slug=pricing")
    if request == b"busy":
        raise errors.Overloaded("embed queue")
    raise RuntimeError("password=hunter2 in a driver message")


_slow_started = asyncio.Event()


async def _slow(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    _slow_started.set()
    await asyncio.sleep(1.0)  # a call that takes a while
    return b"finished"


async def _count(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    for i in range(3):
        yield str(i).encode()
    raise errors.NotFound("page", "3")


def _register(server: grpc.aio.Server) -> None:
    handlers = {
        "Echo": grpc.unary_unary_rpc_method_handler(_echo),
        "Fail": grpc.unary_unary_rpc_method_handler(_fail),
        "Slow": grpc.unary_unary_rpc_method_handler(_slow),
        "Count": grpc.unary_stream_rpc_method_handler(_count),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


def _kit(metrics_port: int = 0, grace: float = 5.0) -> ServerKit:
    return ServerKit(
        name="probe",
        service_names=[SERVICE],
        port=0,
        metrics_port=metrics_port,
        grace_seconds=grace,
    )


async def _health(channel: grpc.aio.Channel, service: str = SERVICE) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
    return int(reply.status)


@pytest.fixture
async def served() -> AsyncIterator[tuple[ServerKit, grpc.aio.Channel, int]]:
    metrics_port = free_port()
    kit = _kit(metrics_port)
    port = await kit.start([_register])
    await kit.set_serving()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield kit, channel, metrics_port
    finally:
        await channel.close()
        await kit.stop()


async def test_domain_errors_reach_the_client_as_status_codes(served) -> None:  # type: ignore[no-untyped-def]
    _, channel, _ = served
    fail = channel.unary_unary(f"/{SERVICE}/Fail")
    expected = {
        b"invalid": (grpc.StatusCode.INVALID_ARGUMENT, "texts[2]: must not be empty"),
        b"missing": (grpc.StatusCode.NOT_FOUND, "node not found: slug=pricing"),
        b"busy": (grpc.StatusCode.RESOURCE_EXHAUSTED, "overloaded: embed queue; retry later"),
    }
    for payload, (code, message) in expected.items():
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await fail(payload)
        assert caught.value.code() is code
        assert caught.value.details() == message


async def test_unexpected_error_is_internal_without_leaking_details(served) -> None:  # type: ignore[no-untyped-def]
    _, channel, _ = served
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channel.unary_unary(f"/{SERVICE}/Fail")(b"boom")
    assert caught.value.code() is grpc.StatusCode.INTERNAL
    assert "hunter2" not in (caught.value.details() or "")
    assert (caught.value.details() or "").startswith("internal error (ref ")


async def test_streaming_error_after_items_keeps_the_items_and_the_code(served) -> None:  # type: ignore[no-untyped-def]
    _, channel, _ = served
    received: list[bytes] = []

    async def consume() -> None:
        async for item in channel.unary_stream(f"/{SERVICE}/Count")(b""):
            received.append(item)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await consume()
    assert received == [b"0", b"1", b"2"]
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def test_reflection_lists_the_service_and_health(served) -> None:  # type: ignore[no-untyped-def]
    _, channel, _ = served
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    names = set()
    async for reply in stub.ServerReflectionInfo(iter([request])):
        names |= {s.name for s in reply.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health"} <= names


async def test_metrics_endpoint_counts_calls_by_method_and_code(served) -> None:  # type: ignore[no-untyped-def]
    _, channel, metrics_port = served
    with pytest.raises(grpc.aio.AioRpcError):
        await channel.unary_unary(f"/{SERVICE}/Fail")(b"invalid")
    assert await channel.unary_unary(f"/{SERVICE}/Echo")(b"hi") == b"hi"
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    assert f'code="INVALID_ARGUMENT",method="/{SERVICE}/Fail"' in body
    assert f'code="OK",method="/{SERVICE}/Echo"' in body


async def test_health_is_not_serving_until_dependencies_are_ready() -> None:
    kit = _kit()
    dependencies_ready = asyncio.Event()
    closed = asyncio.Event()
    stop = asyncio.Event()

    async def start_dependencies() -> None:
        await dependencies_ready.wait()

    async def close_dependencies() -> None:
        closed.set()

    service = asyncio.create_task(
        run_service(
            kit,
            [_register],
            start_dependencies=start_dependencies,
            close_dependencies=close_dependencies,
            stop=stop,
        )
    )
    await asyncio.wait_for(kit.listening.wait(), 10)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{kit.bound_port}") as channel:
        assert await _health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
        assert await _health(channel, "") == health_pb2.HealthCheckResponse.NOT_SERVING
        dependencies_ready.set()
        for _ in range(200):
            if await _health(channel) == health_pb2.HealthCheckResponse.SERVING:
                break
            await asyncio.sleep(0.01)
        assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING
    stop.set()
    await asyncio.wait_for(service, 10)
    assert closed.is_set()


async def test_stop_while_waiting_for_dependencies_returns_cleanly() -> None:
    kit = _kit()
    stop = asyncio.Event()
    closed = asyncio.Event()

    async def never_ready() -> None:
        await asyncio.Event().wait()

    async def close() -> None:
        closed.set()

    service = asyncio.create_task(
        run_service(
            kit, [_register], start_dependencies=never_ready, close_dependencies=close, stop=stop
        )
    )
    await asyncio.wait_for(kit.listening.wait(), 10)
    stop.set()
    await asyncio.wait_for(service, 10)
    assert closed.is_set()


async def test_graceful_shutdown_lets_in_flight_calls_finish() -> None:
    kit = _kit(grace=5.0)
    port = await kit.start([_register])
    await kit.set_serving()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        _slow_started.clear()
        in_flight = asyncio.ensure_future(channel.unary_unary(f"/{SERVICE}/Slow")(b""))
        await _slow_started.wait()  # the call is in the handler
        await kit.stop()
        assert await in_flight == b"finished"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary(f"/{SERVICE}/Echo")(b"late", timeout=2)
        assert caught.value.code() in {
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
        }
