"""Running a service's main coroutine on the event loop its settings name."""

from __future__ import annotations

import asyncio
import gc
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
    library's loop, the heap settled first (:func:`settle_heap`).

    On uvloop (libuv) the search service answers more queries/s for less CPU per query
    (`semantic bench search`, ``throughput.event_loop``); grpc.aio, asyncpg, nats-py and
    uvicorn all run on it.
    """
    factory = _UVLOOP if loop == "uvloop" and _UVLOOP is not None else asyncio.new_event_loop
    settle_heap()  # every module is imported by now: most of what the process holds
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def settle_heap() -> int:
    """Collect the start-up garbage, then move every object alive now (modules, classes,
    functions, settings: the process's long-lived heap) out of the cyclic garbage
    collector's sight (``gc.freeze``); returns how many were moved.

    A full collection walks every tracked object: in a service it paused a request for
    20-30 ms, a Recommend call often enough to set its p99. Frozen objects are still freed
    when their references go (only cycles among them would stay), and what requests
    allocate is collected as before.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
