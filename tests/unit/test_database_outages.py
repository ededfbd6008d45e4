"""Driver errors are classified in one place: what says the database is lost, emptied,
replaced or busy becomes an outage (UNAVAILABLE, never INTERNAL; an indexer outage,
never an attempt of the event); anything else passes through as a bug."""

from __future__ import annotations

import asyncpg
import grpc
import pytest

from semantic.common.errors import InvalidArgument
from semantic.common.grpc_errors import status_for
from semantic.indexer.consumer import dependency_down
from semantic.store.postgres.db import DatabaseOutage, outage_of

OUTAGES = [
    (ConnectionResetError("reset by peer"), "connection"),
    (asyncpg.ConnectionDoesNotExistError("connection was closed"), "connection"),
    (asyncpg.AdminShutdownError("terminating connection"), "connection"),
    (asyncpg.InvalidCatalogNameError('database "x" does not exist'), "connection"),
    (asyncpg.InterfaceError("the underlying connection is closed"), "connection"),
    (asyncpg.UndefinedTableError('relation "semantic.nodes" does not exist'), "schema"),
    (asyncpg.UndefinedObjectError('type "vector" does not exist'), "schema"),
    (asyncpg.UndefinedFunctionError("operator does not exist: vector <=> vector"), "schema"),
    (asyncpg.InvalidSchemaNameError('schema "semantic" does not exist'), "schema"),
    (ValueError("unknown type: public.vector"), "schema"),
    (asyncpg.InternalServerError("cache lookup failed for type 16386"), "codecs"),
    (asyncpg.InvalidCachedStatementError("cached statement plan is invalid"), "codecs"),
    (asyncpg.OutdatedSchemaCacheError("the schema cache is outdated"), "codecs"),
    (asyncpg.TooManyConnectionsError("too many clients"), "busy"),
    (TimeoutError(), "busy"),
]

NOT_OUTAGES = [
    asyncpg.QueryCanceledError("canceling statement due to statement timeout"),
    asyncpg.UniqueViolationError("duplicate key"),
    asyncpg.DataError("expected 384 dimensions, not 3"),
    asyncpg.InternalServerError("something else broke"),
    ValueError("not a vector"),
    InvalidArgument("top_k", "must be positive"),
]


@pytest.mark.parametrize(("error", "kind"), OUTAGES, ids=lambda v: type(v).__name__)
def test_outages_are_named_by_kind_and_become_unavailable(error: Exception, kind: str) -> None:
    assert outage_of(error) == kind
    outage = DatabaseOutage(kind, str(error))  # type: ignore[arg-type]
    assert status_for(outage)[0] is grpc.StatusCode.UNAVAILABLE
    assert dependency_down(error)
    assert dependency_down(outage)


@pytest.mark.parametrize("error", NOT_OUTAGES, ids=lambda v: type(v).__name__)
def test_other_errors_are_not_outages(error: Exception) -> None:
    assert outage_of(error) is None


def test_a_recovery_in_progress_is_unavailable_with_a_reason() -> None:
    code, message = status_for(DatabaseOutage("recovering"))
    assert code is grpc.StatusCode.UNAVAILABLE
    assert "being recovered" in message
