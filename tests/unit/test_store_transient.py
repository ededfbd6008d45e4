"""One list of transient PostgreSQL errors: the store's classification decides what start-up
retries, and the generic retry helper names no driver error."""

from __future__ import annotations

import asyncpg
import pytest

from semantic.common.retry import is_transient
from semantic.store.postgres.db import DatabaseOutage, transient

pytestmark = pytest.mark.unit

RETRIED = [
    ConnectionRefusedError("refused"),
    asyncpg.CannotConnectNowError("the database system is starting up"),
    asyncpg.TooManyConnectionsError("too many clients"),
    asyncpg.ConnectionDoesNotExistError("connection was closed"),
    asyncpg.InterfaceError("the underlying connection is closed"),
    DatabaseOutage("recovering"),
    TimeoutError(),
]
NOT_RETRIED = [
    asyncpg.UniqueViolationError("duplicate key"),
    asyncpg.UndefinedTableError('relation "semantic.nodes" does not exist'),
    asyncpg.InsufficientPrivilegeError("permission denied"),
    ValueError("bad dsn"),
]


@pytest.mark.parametrize("error", RETRIED, ids=lambda e: type(e).__name__)
def test_a_lost_busy_or_starting_database_is_retried(error: BaseException) -> None:
    assert transient(error)


@pytest.mark.parametrize("error", NOT_RETRIED, ids=lambda e: type(e).__name__)
def test_bugs_bad_data_and_a_missing_schema_are_not_retried_at_start_up(
    error: BaseException,
) -> None:
    assert not transient(error)


def test_the_generic_retry_helper_does_not_name_driver_errors() -> None:
    assert not is_transient(asyncpg.CannotConnectNowError("starting up"))
    assert is_transient(ConnectionResetError("reset"))
