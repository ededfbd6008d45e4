"""Timestamps leave the service as protobuf's own ``FromDatetime`` would write them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from google.protobuf import timestamp_pb2
from hypothesis import given
from hypothesis import strategies as st

from semantic.wire.convert import timestamp_to_proto

ZONES = st.sampled_from(
    [None, UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)


@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    ZONES,
)
def test_same_as_from_datetime(value: datetime, zone: timezone | None) -> None:
    value = value.replace(tzinfo=zone)
    expected = timestamp_pb2.Timestamp()
    expected.FromDatetime(value)
    assert timestamp_to_proto(value) == expected


def test_none_is_unset() -> None:
    assert timestamp_to_proto(None) is None
