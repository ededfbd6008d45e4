"""A node row read back is the NodeRecord its columns say, made the fast way
(``node_rows.node_from_row``) and equal to the one the dataclass's own constructor makes."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from semantic.core.domain import NodeRecord
from semantic.store.postgres.node_rows import node_from_row, node_select

pytestmark = pytest.mark.unit


def test_a_row_reads_as_the_record_its_columns_make() -> None:
    created, updated = datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 3, 4, tzinfo=UTC)
    row = {
        "tenant": "acme",
        "id": "n1",
        "slug": "first",
        "content_type": "page",
        "title": "Refunds",
        "body": "Money back in 30 days.",
        "texts": {"summary": "refunds"},
        "tags": ["billing", "help"],
        "metadata": {"lang": "en"},
        "version": 7,
        "content_hash": "abc",
        "created_at": created,
        "updated_at": updated,
    }
    assert sorted(row) == sorted(c.split(".")[1] for c in node_select("n").split(", "))
    read = node_from_row(row)
    made = NodeRecord(**{**row, "tags": ("billing", "help")})
    assert read == made
    assert hash(read.tags) == hash(made.tags)
    assert (read.relations, read.rules, read.vectors_hash) == (None, None, "")
    assert dataclasses.replace(read, title="Returns") == dataclasses.replace(made, title="Returns")
    with pytest.raises(dataclasses.FrozenInstanceError):
        read.title = "changed"  # type: ignore[misc]
