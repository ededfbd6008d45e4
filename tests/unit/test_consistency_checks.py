"""The pure parts of CheckConsistency and Explore: how the store's findings become checks
with a remedy, and how requests are validated (naming the field of a bad value)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from semantic.common.errors import InvalidArgument
from semantic.core.consistency import (
    AliasState,
    MigrationState,
    Remedy,
    SchemaState,
    SpaceTables,
    alias_check,
    schema_check,
    tables_check,
)
from semantic.core.explore import DEFAULT_SAMPLE
from semantic.v1 import search_pb2 as pb
from semantic.wire.admin import consistency_request, explore_request

_AT = datetime(2026, 1, 1, tzinfo=UTC)


def _migration(version: int, recorded: str | None, shipped: str | None) -> MigrationState:
    return MigrationState(version, f"m{version}", recorded, shipped, _AT if recorded else None)


def test_the_schema_is_current_when_every_shipped_migration_is_applied_unchanged() -> None:
    schema = SchemaState((_migration(1, "a", "a"), _migration(2, "b", "b")), ())
    check = schema_check(schema, 10)
    assert (check.ok, check.remedy, check.count) == (True, Remedy.NONE, 0)


def test_pending_changed_and_unknown_migrations_are_each_named() -> None:
    schema = SchemaState(
        (
            _migration(1, "a", "a"),
            _migration(2, "b", "CHANGED"),
            _migration(3, None, "c"),
            _migration(4, "d", None),
        ),
        (),
    )
    check = schema_check(schema, 10)
    assert not check.ok
    assert check.remedy is Remedy.MIGRATE
    assert check.count == 3
    assert check.examples == ("002_m2.sql", "003_m3.sql", "004_m4.sql")
    assert "1 not applied" in check.summary
    assert "checksum differs" in check.summary
    assert "not shipped" in check.summary
    assert schema_check(schema, 1).examples == ("002_m2.sql",)


def test_a_missing_ledger_or_extension_fails_the_schema_check() -> None:
    check = schema_check(SchemaState((), ("extension vector",)), 10)
    assert (check.ok, check.remedy, check.examples) == (
        False,
        Remedy.MIGRATE,
        ("extension vector",),
    )


def _alias(**changes: object) -> AliasState:
    values: dict[str, object] = {
        "alias_space_id": 2,
        "active_state_ids": (2,),
        "space_dim": 384,
        "table_exists": True,
        "column_dim": 384,
    }
    values.update(changes)
    return AliasState(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "remedy", "words"),
    [
        ({}, Remedy.NONE, "one active space (2)"),
        ({"alias_space_id": None, "active_state_ids": ()}, Remedy.ROLLBACK, "names no space"),
        ({"active_state_ids": (1, 2)}, Remedy.ROLLBACK, "in state active are [1, 2]"),
        ({"active_state_ids": (1,)}, Remedy.ROLLBACK, "in state active are [1]"),
        ({"table_exists": False, "column_dim": None}, Remedy.REINDEX, "table of active space 2"),
        ({"column_dim": 768}, Remedy.REINDEX, "vector column has 768"),
    ],
)
def test_the_alias_check_names_what_is_wrong_and_its_remedy(
    changes: dict[str, object], remedy: Remedy, words: str
) -> None:
    check = alias_check(_alias(**changes))
    assert check.ok is (remedy is Remedy.NONE)
    assert check.remedy is remedy
    assert words in check.summary


def test_spaces_not_retired_need_their_table_and_hnsw_index() -> None:
    tables = [
        SpaceTables(1, "retired", False, False),  # retired: not required
        SpaceTables(2, "active", True, True),
        SpaceTables(3, "ready", True, False),
        SpaceTables(4, "building", False, False),
    ]
    check = tables_check(tables, 10)
    assert (check.ok, check.count, check.examples) == (False, 2, ("3", "4"))
    assert check.remedy is Remedy.REINDEX
    assert "3 (no HNSW index)" in check.summary
    assert "4 (no table)" in check.summary
    assert tables_check(tables[:2], 10).ok


def test_a_consistency_request_is_bounded() -> None:
    assert consistency_request(pb.CheckConsistencyRequest()) == (None, 0)
    assert consistency_request(pb.CheckConsistencyRequest(space_id="3", sample_limit=100)) == (
        3,
        100,
    )
    with pytest.raises(InvalidArgument) as caught:
        consistency_request(pb.CheckConsistencyRequest(sample_limit=101))
    assert caught.value.field == "sample_limit"
    with pytest.raises(InvalidArgument) as caught:
        consistency_request(pb.CheckConsistencyRequest(space_id="x"))
    assert caught.value.field == "space_id"


def test_an_explore_request_gets_its_defaults() -> None:
    space_id, query = explore_request(pb.ExploreRequest(seed=9), "acme")
    assert space_id is None
    assert (query.tenant, query.vector_name, query.sample, query.seed) == (
        "acme",
        "content",
        DEFAULT_SAMPLE,
        9,
    )
    _, query = explore_request(
        pb.ExploreRequest(content_types=["a", "b", "a"], sample=5000, vector_name="title"), ""
    )
    assert (query.content_types, query.sample, query.vector_name) == (("a", "b"), 5000, "title")


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.ExploreRequest(sample=5001), "sample"),
        (pb.ExploreRequest(content_types=["ok", "Bad"]), "content_types[1]"),
        (pb.ExploreRequest(content_types=["x"] * 65), "content_types"),
        (pb.ExploreRequest(vector_name="no\x00pe"), "vector_name"),
        (pb.ExploreRequest(space_id="0"), "space_id"),
    ],
)
def test_a_bad_explore_request_names_the_field(request_: pb.ExploreRequest, field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        explore_request(request_, "")
    assert caught.value.field == field
