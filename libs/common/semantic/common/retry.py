"""The one retry helper: tenacity with backoff, for start-up and idempotent outbound calls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_exponential_jitter,
)

from semantic.common.errors import DependencyUnavailable

T = TypeVar("T")
log = structlog.get_logger(__name__)


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying whatever the peer: it is not (yet) reachable or starting up."""
    if isinstance(exc, DependencyUnavailable | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, OSError):  # refused, unreachable, reset, DNS not ready yet
        return True
    # NATS before its first server answers, checked by name so this module does not import
    # the client. A store classifies its own driver's errors and passes ``transient``
    # (PostgreSQL: ``semantic.store.postgres.db.transient``).
    return type(exc).__name__ == "NoServersError"


async def retry_async(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    timeout_s: float,
    transient: Callable[[BaseException], bool] = is_transient,
    initial_s: float = 0.1,
    max_wait_s: float = 5.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run ``operation`` until it succeeds, retrying transient errors with jittered backoff.

    Gives up after ``timeout_s`` seconds (of ``clock``) and re-raises the last error; a
    non-transient error is raised at once. Every retry is logged with the reason.

    The first attempt runs outside tenacity: its machinery costs about 50 us a call, which
    every query embedding paid for nothing when the call succeeds (as nearly all do). A
    transient failure of that attempt is handed to tenacity as its own first attempt, so
    waits, logs and the deadline are as if tenacity had made it.
    """
    started = clock()
    try:
        return await operation()
    except Exception as exc:
        if not transient(exc):
            raise
        failed: BaseException | None = exc

    async def attempt() -> T:
        nonlocal failed
        if failed is not None:  # tenacity's first attempt is the one already made
            first, failed = failed, None
            raise first
        return await operation()

    def _out_of_time(state: RetryCallState) -> bool:
        return clock() - started >= timeout_s

    def _log_retry(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "dependency_retry",
            dependency=what,
            attempt=state.attempt_number,
            error=f"{type(exc).__name__}: {exc}",
            next_wait_s=round(state.upcoming_sleep, 2),
        )

    retrying = AsyncRetrying(
        stop=_out_of_time,
        wait=wait_exponential_jitter(multiplier=initial_s, max=max_wait_s, jitter=initial_s),
        retry=retry_if_exception(transient),
        before_sleep=_log_retry,
        sleep=sleep,
        reraise=True,
    )
    result: T = await retrying(attempt)
    attempts = int(retrying.statistics.get("attempt_number", 1))
    if attempts > 1:
        log.info("dependency_ready", dependency=what, attempts=attempts)
    return result
