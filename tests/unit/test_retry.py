"""The retry helper retries transient errors only, and gives up at its deadline.

Time is a fake clock here: the helper's waits advance it, nothing really sleeps.
"""

from typing import Any

import pytest

from semantic.common import retry
from semantic.common.errors import DependencyUnavailable, InvalidArgument
from semantic.common.retry import is_transient, retry_async


class Recorder:
    """Stands in for the module's logger: what it was told, whatever structlog's state."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.events.append({"event": event, **fields})

    info = warning


class FakeTime:
    """A clock that only the retry helper's sleeps move forward."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


async def test_transient_errors_are_retried_until_success() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionRefusedError("not yet")
        return "up"

    fake = FakeTime()
    outcome = await retry_async(
        flaky, what="thing", timeout_s=10, initial_s=0.01, sleep=fake.sleep, clock=fake.clock
    )
    assert outcome == "up"
    assert calls == 3
    assert len(fake.waits) == 2  # one wait before each retry


async def test_non_transient_error_is_raised_at_once() -> None:
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise InvalidArgument("x", "bad")

    fake = FakeTime()
    with pytest.raises(InvalidArgument):
        await retry_async(
            broken, what="thing", timeout_s=10, initial_s=0.01, sleep=fake.sleep, clock=fake.clock
        )
    assert calls == 1
    assert fake.waits == []


async def test_gives_up_after_the_deadline_with_the_last_error() -> None:
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise DependencyUnavailable("nats", f"refused (attempt {calls})")

    fake = FakeTime()
    with pytest.raises(DependencyUnavailable, match="nats unavailable") as caught:
        await retry_async(
            down,
            what="nats",
            timeout_s=0.2,
            initial_s=0.01,
            max_wait_s=0.05,
            sleep=fake.sleep,
            clock=fake.clock,
        )
    assert calls > 2  # it did retry before giving up ...
    assert str(caught.value).endswith(f"(attempt {calls})")  # ... and raised the last error
    assert fake.now >= 0.2  # at the deadline, not before
    assert fake.now - fake.waits[-1] < 0.2  # and not a wait later


async def test_a_first_attempt_that_fails_is_retried_as_tenacitys_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first call runs before tenacity: when it fails transiently, the retry is the
    second call, after one wait, and the log numbers it attempt 1 as before."""
    logs = Recorder()
    monkeypatch.setattr(retry, "log", logs)
    calls = 0

    async def once_refused() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionRefusedError("starting")
        return "up"

    fake = FakeTime()
    outcome = await retry_async(
        once_refused,
        what="embedder",
        timeout_s=10,
        initial_s=0.01,
        sleep=fake.sleep,
        clock=fake.clock,
    )
    assert (outcome, calls, len(fake.waits)) == ("up", 2, 1)
    retries = [e for e in logs.events if e["event"] == "dependency_retry"]
    assert [(e["attempt"], e["error"]) for e in retries] == [
        (1, "ConnectionRefusedError: starting")
    ]
    assert [e["attempts"] for e in logs.events if e["event"] == "dependency_ready"] == [2]


async def test_a_first_success_makes_one_call_and_no_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logs = Recorder()
    monkeypatch.setattr(retry, "log", logs)
    calls = 0

    async def fine() -> int:
        nonlocal calls
        calls += 1
        return 7

    fake = FakeTime()
    outcome = await retry_async(fine, what="x", timeout_s=1, sleep=fake.sleep, clock=fake.clock)
    assert (outcome, calls, fake.waits, logs.events) == (7, 1, [], [])


def test_transient_classification() -> None:
    assert is_transient(OSError("unreachable"))
    assert is_transient(TimeoutError())
    assert not is_transient(ValueError("bad dsn"))
    assert not is_transient(InvalidArgument("f", "p"))
