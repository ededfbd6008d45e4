"""A service's main coroutine runs on the event loop its settings name."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest
import uvloop

from semantic.common import runtime
from semantic.common.settings import BaseServiceSettings


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    """runtime.run settles the heap (gc.freeze): undone after each test here."""
    yield
    gc.unfreeze()


async def _loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEMANTIC_EVENT_LOOP", raising=False)
    settings = BaseServiceSettings(_env_file=None)
    assert settings.event_loop == "uvloop"
    assert runtime.run(_loop_type(), settings.event_loop) is uvloop.Loop


def test_the_standard_loop_one_setting_away(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEMANTIC_EVENT_LOOP", "asyncio")
    settings = BaseServiceSettings(_env_file=None)
    loop_type = runtime.run(_loop_type(), settings.event_loop)
    assert not issubclass(loop_type, uvloop.Loop)
    assert issubclass(loop_type, asyncio.AbstractEventLoop)


def test_an_unknown_loop_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEMANTIC_EVENT_LOOP", "trio")
    with pytest.raises(ValueError, match="event_loop"):
        BaseServiceSettings(_env_file=None)


def test_the_heap_settled_at_start_is_out_of_the_collectors_sight() -> None:
    """What lives at start-up is frozen (a full collection no longer walks it); garbage
    made afterwards, cycles included, is still collected."""

    class Cycle:
        partner: object = None

    frozen = runtime.settle_heap()
    assert frozen > 1000  # this process's modules, classes, functions...
    assert gc.get_freeze_count() == frozen
    a, b = Cycle(), Cycle()
    a.partner, b.partner = b, a
    gone = weakref.ref(a)
    del a, b
    gc.collect()
    assert gone() is None
