"""Waiting for a gRPC service to report SERVING (used by `semantic dev`, benches, tests)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from semantic.tools.devstack.errors import DevstackError


async def wait_serving(
    address: str,
    *,
    exit_code: Callable[[], int | None] = lambda: None,
    name: str = "service",
    timeout_s: float = 300.0,
) -> None:
    """Poll grpc.health.v1 at ``address`` until SERVING.

    ``exit_code`` reports the process's exit code once it has ended (None while it
    runs); an ended process or the timeout raise DevstackError naming ``name``.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    request = health_pb2.HealthCheckRequest(service="")
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while loop.time() < deadline:
            code = exit_code()
            if code is not None:
                raise DevstackError(f"{name} exited with code {code} during start-up")
            try:
                reply = await stub.Check(request, timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)
    raise DevstackError(f"{name} did not become SERVING at {address} within {timeout_s:.0f} s")
