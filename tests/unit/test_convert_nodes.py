"""A node written in place (``fill_node``, what every hit goes through) is the same message
a constructor given every field builds, and the jsonb decoder's shortcut changes no value."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from semantic.core.domain import NodeRecord
from semantic.store.postgres.db import _jsonb
from semantic.v1 import common_pb2 as cpb
from semantic.wire.convert import node_to_proto, timestamp_to_proto

TEXT = st.text(max_size=20)
STAMPS = st.none() | st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=8)
METADATA = st.dictionaries(st.text(min_size=1, max_size=8), JSON_SCALARS, max_size=4)


@st.composite
def records(draw: st.DrawFn) -> NodeRecord:
    return NodeRecord(
        tenant=draw(TEXT),
        id=draw(st.text(min_size=1, max_size=20)),
        slug=draw(st.none() | TEXT),
        content_type=draw(TEXT),
        title=draw(TEXT),
        body=draw(TEXT),
        texts=draw(st.dictionaries(st.text(min_size=1, max_size=8), TEXT, max_size=3)),
        tags=tuple(draw(st.lists(TEXT, max_size=3))),
        metadata=draw(METADATA),
        version=draw(st.integers(0, 2**63 - 1)),
        content_hash=draw(TEXT),
        created_at=draw(STAMPS),
        updated_at=draw(STAMPS),
    )


def built_whole(record: NodeRecord, include_body: bool) -> cpb.Node:
    message = cpb.Node(
        id=record.id,
        tenant=record.tenant,
        slug=record.slug or "",
        content_type=record.content_type,
        title=record.title,
        body=record.body if include_body else "",
        tags=record.tags,
        version=record.version,
        content_hash=record.content_hash,
        texts=record.texts if include_body else None,
        created_at=timestamp_to_proto(record.created_at),
        updated_at=timestamp_to_proto(record.updated_at),
    )
    if record.metadata:
        message.metadata.update(dict(record.metadata))
    return message


@given(records(), st.booleans())
def test_in_place_equals_built_whole(record: NodeRecord, include_body: bool) -> None:
    made = node_to_proto(record, include_body=include_body)
    assert made == built_whole(record, include_body)
    assert made.HasField("created_at") == (record.created_at is not None)
    assert made.SerializeToString(deterministic=True) == built_whole(
        record, include_body
    ).SerializeToString(deterministic=True)


@given(st.recursive(JSON_SCALARS, lambda kids: st.lists(kids) | st.dictionaries(TEXT, kids)))
def test_jsonb_shortcut_decodes_as_json(value: object) -> None:
    text = json.dumps(value)
    assert _jsonb(text) == json.loads(text)
    assert _jsonb("{}") == {}
    assert _jsonb("{}") is not _jsonb("{}")  # a fresh dict each time: callers may change it
