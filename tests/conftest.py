"""Session fixtures: real PostgreSQL + pgvector and NATS JetStream on free loopback ports.

Every fixture is lazy: a test that requests none of them starts nothing. Tests under
tests/unit/ are marked `unit` and those under tests/integration/ `integration`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from db_kit import fresh_database

from semantic.tools.devstack import EmbeddedNats, EmbeddedPostgres, free_port
from semantic.tools.devstack.service import ServiceProcess

TESTS_DIR = Path(__file__).parent
_MARK_BY_FOLDER = {"unit": pytest.mark.unit, "integration": pytest.mark.integration}

# Durability is pointless for throw-away test data; process crashes stay safe without it.
_FAST_POSTGRES = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by its top-level folder under tests/ (unit or integration)."""
    for item in items:
        try:
            folder = item.path.relative_to(TESTS_DIR).parts[0]
        except ValueError:
            continue
        mark = _MARK_BY_FOLDER.get(folder)
        if mark is not None and item.get_closest_marker(mark.name) is None:
            item.add_marker(mark)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """One PostgreSQL 18 + pgvector for the whole session, in a temporary data dir."""
    server = EmbeddedPostgres(
        tmp_path_factory.mktemp("postgres") / "data", port=free_port(), settings=_FAST_POSTGRES
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """One nats-server with JetStream for the whole session, in a temporary store."""
    server = EmbeddedNats(tmp_path_factory.mktemp("nats"), port=free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def database_url(pg_server: EmbeddedPostgres) -> Iterator[str]:
    """The DSN of a fresh, empty database on the session server, dropped afterwards."""
    yield from fresh_database(pg_server)


# --- services as processes ---------------------------------------------------------


@pytest.fixture(scope="session")
def service_starter() -> Iterator[Callable[[str, dict[str, str]], ServiceProcess]]:
    """Starts services for a test and stops whatever is left at the end of the session."""
    started: list[ServiceProcess] = []

    def start(module: str, env: dict[str, str]) -> ServiceProcess:
        service = ServiceProcess.spawn(module, env)
        started.append(service)
        return service

    try:
        yield start
    finally:
        for service in started:
            service.stop()


@pytest.fixture(scope="session")
def embedder_address(
    fp32_model_dir: Path, service_starter: Callable[[str, dict[str, str]], ServiceProcess]
) -> str:
    """One embedder process (fp32 model, one thread) shared by the session's tests."""
    service = service_starter(
        "semantic.embedder",
        {
            "SEMANTIC_EMBEDDER_MODEL_DIRS": str(fp32_model_dir),
            "SEMANTIC_EMBEDDER_INTRA_OP_THREADS": "1",
        },
    )
    asyncio.run(service.wait_serving(timeout_s=120.0))
    return service.address
