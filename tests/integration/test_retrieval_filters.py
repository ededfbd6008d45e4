"""Node filters compiled to SQL, run on real PostgreSQL: every condition kind, bad stored values."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from semantic.core.domain import Filter, MetadataCondition, NumberRange, TimeRange
from semantic.store.postgres.filters import compile_filter
from semantic.store.postgres.schema import bootstrap_schema
from semantic.tools.devstack import EmbeddedPostgres

_NOW = datetime(2025, 6, 1, tzinfo=UTC)
_FILTER_NODES: dict[str, dict[str, Any]] = {
    "a": {
        "metadata": {
            "color": "red",
            "price": 5,
            "when": "2024-03-01T10:00:00Z",
            "spec": {"size": 1, "kind": "x"},
            "flag": True,
        },
        "tags": ["t1", "t2"],
    },
    "b": {
        "metadata": {
            "color": "blue",
            "price": 10.5,
            "when": "2024-03-01T12:00:00+05:00",
            "spec": {"size": 2.0},
            "flag": False,
        },
        "tags": ["t1"],
    },
    "c": {
        "metadata": {"color": None, "price": "7", "when": "2024-02-31", "spec": {"size": "big"}},
        "tags": ["t3"],
        "content_type": "faq",
    },
    "d": {"metadata": {"price": 1e300, "when": "yesterday", "spec": "flat"}, "tags": []},
    "e": {"metadata": {"price": True, "when": 20240301, "color": ["red"]}, "tags": ["t2"]},
    "f": {"metadata": {"when": "2024-03-02", "price": -3}, "tags": ["t1", "t3"]},
}


@pytest_asyncio.fixture(scope="module")
async def filter_url(pg_server: EmbeddedPostgres) -> AsyncIterator[str]:
    """One database for the module: these tests only read."""
    name = f"t_{uuid.uuid4().hex}"
    pg_server.create_database(name)
    try:
        url = pg_server.url(name)
        await bootstrap_schema(url)
        connection = await asyncpg.connect(url)
        try:
            await _insert_filter_nodes(connection)
        finally:
            await connection.close()
        yield url
    finally:
        pg_server.drop_database(name)


@pytest_asyncio.fixture
async def filter_db(filter_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(filter_url)
    try:
        yield connection
    finally:
        await connection.close()


async def _insert_filter_nodes(connection: asyncpg.Connection) -> None:
    for offset, (node_id, node) in enumerate(sorted(_FILTER_NODES.items())):
        await connection.execute(
            "INSERT INTO semantic.nodes (tenant, id, content_type, tags, metadata,"
            " content_hash, created_at, updated_at)"
            " VALUES ('', $1, $2, $3, $4::text::jsonb, '', $5, $6)",
            node_id,
            node.get("content_type", "doc"),
            node["tags"],
            json.dumps(node["metadata"]),
            _NOW - timedelta(days=offset),
            _NOW + timedelta(days=offset),
        )
    await connection.execute(
        "INSERT INTO semantic.nodes (tenant, id, content_type, metadata, content_hash)"
        " VALUES ('x', 'a', 'doc', '{\"color\": \"red\"}', '')"
    )


async def _ids(conn: asyncpg.Connection, flt: Filter, tenant: str = "") -> list[str]:
    sql, params = compile_filter(tenant, flt, start=2)
    rows = await conn.fetch(
        f"SELECT n.id FROM semantic.nodes n WHERE n.id <> $1 AND {sql} ORDER BY n.id",
        "",
        *params,
    )
    return [r["id"] for r in rows]


def _meta(**kwargs: Any) -> Filter:
    return Filter(metadata=(MetadataCondition(**kwargs),))


_T = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        pytest.param(Filter(), ["a", "b", "c", "d", "e", "f"], id="no filter"),
        pytest.param(_meta(key="color", equals="red"), ["a", "e"], id="equals string or in array"),
        pytest.param(
            _meta(key="color", equals="red", negate=True),
            ["b", "c", "d", "f"],
            id="negated equals keeps missing keys",
        ),
        pytest.param(
            _meta(key="color", any_of=("green", "red")), ["a", "e"], id="any_of reaches arrays"
        ),
        pytest.param(_meta(key="spec.size", equals=1), ["a"], id="equals nested number"),
        pytest.param(_meta(key="spec.size", equals=2), ["b"], id="equals 2 matches 2.0"),
        pytest.param(_meta(key="flag", equals=True), ["a"], id="equals true"),
        pytest.param(_meta(key="flag", equals=False), ["b"], id="equals false"),
        pytest.param(_meta(key="color", any_of=("blue", None)), ["b", "c"], id="any_of with null"),
        pytest.param(
            _meta(key="price", number_range=NumberRange(gte=5, lte=10.5)),
            ["a", "b"],
            id="number range inclusive",
        ),
        pytest.param(
            _meta(key="price", number_range=NumberRange(gt=5)), ["b", "d"], id="number range gt"
        ),
        pytest.param(
            _meta(key="price", number_range=NumberRange(lt=0)), ["f"], id="number range lt"
        ),
        pytest.param(
            _meta(key="price", number_range=NumberRange(lt=0), negate=True),
            ["a", "b", "c", "d", "e"],
            id="negated number range",
        ),
        pytest.param(
            _meta(key="spec.size", number_range=NumberRange(gte=0)),
            ["a", "b"],
            id="nested number range skips strings",
        ),
        pytest.param(
            _meta(key="when", time_range=TimeRange(start=_T)), ["a", "f"], id="time range start"
        ),
        pytest.param(
            _meta(key="when", time_range=TimeRange(end=_T)), ["b"], id="time range end with offset"
        ),
        pytest.param(
            _meta(key="when", time_range=TimeRange(start=_T, end=_T + timedelta(hours=3))),
            ["a"],
            id="time range both",
        ),
        pytest.param(_meta(key="spec.kind", exists=True), ["a"], id="exists nested"),
        pytest.param(
            _meta(key="color", exists=True), ["a", "b", "c", "e"], id="exists counts null"
        ),
        pytest.param(_meta(key="color", exists=False), ["d", "f"], id="not exists"),
        pytest.param(Filter(content_types=("faq",)), ["c"], id="content types"),
        pytest.param(Filter(tags_any=("t2", "t3")), ["a", "c", "e", "f"], id="tags any"),
        pytest.param(Filter(tags_all=("t1", "t3")), ["f"], id="tags all"),
        pytest.param(Filter(tags_none=("t1",)), ["c", "d", "e"], id="tags none"),
        pytest.param(
            Filter(ids=("a", "b", "zz"), exclude_ids=("b",)), ["a"], id="ids and exclude ids"
        ),
        pytest.param(
            Filter(created=TimeRange(start=_NOW - timedelta(days=1))), ["a", "b"], id="created"
        ),
        pytest.param(Filter(updated=TimeRange(end=_NOW + timedelta(days=1))), ["a"], id="updated"),
        pytest.param(
            Filter(tags_any=("t1",), metadata=(MetadataCondition("price", exists=True),)),
            ["a", "b", "f"],
            id="tags and metadata",
        ),
    ],
)
async def test_each_filter_kind_selects_the_right_nodes(
    filter_db: asyncpg.Connection, flt: Filter, expected: list[str]
) -> None:
    assert await _ids(filter_db, flt) == expected


async def test_bad_stored_values_never_error_a_query(filter_db: asyncpg.Connection) -> None:
    # c holds "7" and "2024-02-31", d 1e300 and "yesterday", e a bool, a number, an array.
    for key in ("price", "when", "color", "spec", "spec.size", "flag"):
        for flt in (
            _meta(key=key, number_range=NumberRange(gte=-1e308)),
            _meta(key=key, time_range=TimeRange(start=datetime(1, 1, 2, tzinfo=UTC))),
            _meta(key=key, equals="x"),
            _meta(key=key, any_of=(1, "a", None, True)),
        ):
            await _ids(filter_db, flt)


async def test_the_tenant_is_always_part_of_the_filter(filter_db: asyncpg.Connection) -> None:
    assert await _ids(filter_db, _meta(key="color", equals="red"), tenant="x") == ["a"]
    assert await _ids(filter_db, Filter(), tenant="nobody") == []
