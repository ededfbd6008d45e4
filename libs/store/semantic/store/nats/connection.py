"""A NATS connection that never holds a process up.

:func:`connect` retries until NATS answers (the indexer, which cannot work without it,
waits for it at start). :class:`BackgroundConnection` connects in a background task,
retrying forever with a growing delay, and reconnects by itself afterwards (the search
service, for which NATS is optional: its Admin RPCs on the pipeline answer UNAVAILABLE
until it is there, and the health report says why).
"""

from __future__ import annotations

import asyncio
import contextlib
import random

import nats
import structlog
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from semantic.common.errors import DependencyUnavailable
from semantic.common.retry import retry_async

log = structlog.get_logger(__name__)

RETRY_MAX_S = 10.0
"""Longest wait between two connection attempts of a background connection."""


def servers(url: str) -> list[str]:
    """The server URLs of a comma-separated list."""
    return [u.strip() for u in url.split(",") if u.strip()]


async def _open(url: str, name: str) -> NatsClient:
    async def quiet(exc: Exception) -> None:
        log.debug("nats_client_error", error=f"{type(exc).__name__}: {exc}")

    async def disconnected() -> None:
        log.warning("nats_disconnected", client=name)

    async def reconnected() -> None:
        log.info("nats_reconnected", client=name)

    return await nats.connect(
        servers=servers(url),
        name=name,
        connect_timeout=2,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        error_cb=quiet,
        disconnected_cb=disconnected,
        reconnected_cb=reconnected,
    )


async def connect(url: str, timeout_s: float, name: str) -> NatsClient:
    """Connect (retrying until NATS answers or ``timeout_s``), reconnecting forever
    afterwards."""

    async def attempt() -> NatsClient:
        return await _open(url, name)

    return await retry_async(attempt, what="nats", timeout_s=timeout_s)


class BackgroundConnection:
    """An optional NATS connection made in the background (see the module doc)."""

    def __init__(self, url: str | None, name: str) -> None:
        self._url = url or ""
        self._name = name
        self._client: NatsClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._error = ""

    @property
    def configured(self) -> bool:
        """False when no NATS URL was given."""
        return bool(self._url)

    def start(self) -> None:
        """Start connecting (no-op without a URL or when already started)."""
        if self.configured and self._task is None:
            self._task = asyncio.create_task(self._connect(), name=f"nats-{self._name}")

    async def _connect(self) -> None:
        delay = 0.5
        while True:
            try:
                self._client = await _open(self._url, self._name)
            except Exception as exc:  # keep trying: NATS may come later
                self._error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                log.warning("nats_unreachable", error=self._error, next_wait_s=round(delay, 1))
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            self._error = ""
            log.info("nats_connected", url=str(self._client.connected_url))
            return

    def status(self) -> tuple[bool, str]:
        """(connected, a detail: the server and version, or why not)."""
        if not self.configured:
            return False, "not configured (NATS_URL is not set)"
        client = self._client
        if client is None:
            return False, f"connecting: {self._error or 'first attempt'}"
        if not client.is_connected:
            return False, "disconnected, reconnecting"
        where = client.connected_url.netloc if client.connected_url else "?"
        try:
            version = client.connected_server_version
            release = f"{version.major}.{version.minor}.{version.patch}"
        except ValueError:  # a version that is not semver: shown as the server gave it
            release = str(client.connected_server_version)
        return True, f"nats-server {release} at {where}"

    def jetstream(self, timeout_s: float) -> JetStreamContext:
        """JetStream on the connection; DependencyUnavailable when not connected."""
        connected, detail = self.status()
        if not connected or self._client is None:
            raise DependencyUnavailable("nats", detail)
        return self._client.jetstream(timeout=timeout_s)

    async def close(self) -> None:
        """Stop connecting and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()
