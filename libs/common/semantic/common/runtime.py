"""Running a service's main coroutine on the event loop its settings name."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

from semantic.common.settings import EventLoop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T], loop: EventLoop) -> T:
    """``asyncio.run(main)`` on uvloop or on the standard library's loop.

    uvloop (libuv) costs the search service about a tenth less CPU per gRPC call and per
    asyncpg statement (`semantic bench search`, ``throughput``); grpc.aio, asyncpg, nats-py
    and uvicorn all run on it.
    """
    factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
