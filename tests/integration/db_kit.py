"""Databases for tests: a new, empty one on the session's PostgreSQL, dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from semantic.tools.devstack.postgres import EmbeddedPostgres


def fresh_database(pg_server: EmbeddedPostgres) -> Iterator[str]:
    """The DSN of a new, empty database on ``pg_server``, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex}"
    pg_server.create_database(name)
    try:
        yield pg_server.url(name)
    finally:
        pg_server.drop_database(name)
