"""Running a service's main coroutine on the event loop its settings name."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from semantic.common.settings import EventLoop

try:
    import uvloop

    _UVLOOP: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
except ImportError:  # not installed where it does not build (Windows): the standard loop
    _UVLOOP = None

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T], loop: EventLoop) -> T:
    """``asyncio.run(main)`` on uvloop (where it is installed) or on the standard
    library's loop.

    On uvloop (libuv) the search service answers more queries/s for less CPU per query
    (`semantic bench search`, ``throughput.event_loop``); grpc.aio, asyncpg, nats-py and
    uvicorn all run on it.
    """
    factory = _UVLOOP if loop == "uvloop" and _UVLOOP is not None else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
