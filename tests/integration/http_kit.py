"""A search service process with its HTTP API on, for the HTTP, schema and console tests."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from indexer_kit import search_env

from semantic.common.auth import mint_token
from semantic.tools.devstack.ports import free_port
from semantic.tools.devstack.postgres import EmbeddedPostgres

SECRET = "http-test-secret-0123456789-abcdefghijklmnop"
AUDIENCE = "semantic"


@dataclass
class HttpSearch:
    """The running service: its HTTP base URL, gRPC address and metrics URL."""

    url: str
    grpc: str
    metrics: str
    process: Any

    def token(self, roles: list[str], tenant: str | None = None, subject: str = "svc") -> str:
        """A JWT the service accepts."""
        return mint_token(SECRET, subject=subject, roles=roles, tenant=tenant, audience=AUDIENCE)

    def headers(
        self, roles: list[str], tenant: str | None = None, subject: str = "svc"
    ) -> dict[str, str]:
        """``Authorization: Bearer`` for those roles."""
        return {"Authorization": f"Bearer {self.token(roles, tenant, subject)}"}


def start_http_search(
    pg_server: EmbeddedPostgres,
    embedder_address: str,
    model_dir: Path,
    starter: Callable[[str, dict[str, str]], Any],
    **extra: str,
) -> Iterator[HttpSearch]:
    """A search process on a new database with JWT auth and the HTTP API on a free port."""
    name = f"http_{uuid.uuid4().hex}"
    pg_server.create_database(name)
    http_port, metrics_port = free_port(), free_port()
    env = {
        **search_env(pg_server.url(name), embedder_address, model_dir),
        "SEMANTIC_AUTH_MODE": "jwt",
        "SEMANTIC_AUTH_JWT_SECRET": SECRET,
        "SEMANTIC_AUTH_JWT_AUDIENCE": AUDIENCE,
        "SEMANTIC_HTTP_PORT": str(http_port),
        "SEMANTIC_METRICS_HOST": "127.0.0.1",
        "SEMANTIC_METRICS_PORT": str(metrics_port),
        **extra,
    }
    process = starter("semantic.search", env)
    try:
        asyncio.run(process.wait_serving(timeout_s=120))
        url = f"http://127.0.0.1:{http_port}"
        wait_ready(url)
        yield HttpSearch(url, process.address, f"http://127.0.0.1:{metrics_port}", process)
    finally:
        process.stop()
        pg_server.drop_database(name)


def wait_ready(url: str, timeout_s: float = 60.0) -> None:
    """Until ``/readyz`` answers 200 (playwright's sync API must not be running yet)."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            response = requests.get(f"{url}/readyz", timeout=5)
            if response.status_code == 200:
                return
            last = response.status_code
        except requests.ConnectionError as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{url}/readyz not ready: {last}")
