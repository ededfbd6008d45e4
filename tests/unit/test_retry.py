"""The retry helper retries transient errors only, and gives up at its deadline."""

import pytest

from semantic.common.errors import DependencyUnavailable, InvalidArgument
from semantic.common.retry import is_transient, retry_async


async def test_transient_errors_are_retried_until_success() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionRefusedError("not yet")
        return "up"

    assert await retry_async(flaky, what="thing", timeout_s=10, initial_s=0.01) == "up"
    assert calls == 3


async def test_non_transient_error_is_raised_at_once() -> None:
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise InvalidArgument("x", "bad")

    with pytest.raises(InvalidArgument):
        await retry_async(broken, what="thing", timeout_s=10, initial_s=0.01)
    assert calls == 1


async def test_gives_up_after_the_deadline_with_the_last_error() -> None:
    async def down() -> None:
        raise DependencyUnavailable("nats", "refused")

    with pytest.raises(DependencyUnavailable, match="nats unavailable"):
        await retry_async(down, what="nats", timeout_s=0.2, initial_s=0.01, max_wait_s=0.05)


def test_transient_classification() -> None:
    assert is_transient(OSError("unreachable"))
    assert is_transient(TimeoutError())
    assert not is_transient(ValueError("bad dsn"))
    assert not is_transient(InvalidArgument("f", "p"))
