"""Domain values made without their dataclass ``__init__`` (``assembled``) are the values
the ``__init__`` makes: equal, hashed alike, still frozen."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from semantic.core.domain import ChunkMatch, DenseHit, NodeRecord, assembled

pytestmark = pytest.mark.unit
WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_an_assembled_value_equals_the_constructed_one() -> None:
    values = {
        "vector_name": "content",
        "chunk_index": 2,
        "span_start": 10,
        "span_end": 40,
        "similarity": 0.75,
    }
    made, built = assembled(ChunkMatch, **values), ChunkMatch(**values)
    assert made == built
    assert hash(made) == hash(built)
    assert repr(made) == repr(built)
    hit = {"node_id": "n1", "score": 0.75, "chunk": made, "target_scores": {"content": 0.75}}
    assert assembled(DenseHit, **hit, node=None) == DenseHit(**hit)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.similarity = 0.5  # type: ignore[misc]


def test_a_partial_node_is_the_node_with_defaults() -> None:
    partial = NodeRecord.partial("t", "n1", "page", WHEN)
    assert partial == NodeRecord("t", "n1", "page", updated_at=WHEN)
    other = NodeRecord.partial("t", "n2", "page", None)
    assert other.texts is not partial.texts
    assert other.metadata is not partial.metadata
