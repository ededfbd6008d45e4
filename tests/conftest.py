"""Session fixtures: real PostgreSQL + pgvector and NATS JetStream on free loopback ports.

Every fixture is lazy: a test that requests none of them starts nothing. Tests under
tests/unit/ are marked `unit` and those under tests/integration/ `integration`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from semantic.devstack import EmbeddedNats, EmbeddedPostgres, free_port

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
    name = f"t_{uuid.uuid4().hex}"
    pg_server.create_database(name)
    try:
        yield pg_server.url(name)
    finally:
        pg_server.drop_database(name)
