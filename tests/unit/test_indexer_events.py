"""Decoding and validating content events: both encodings, and every poison reason named."""

import pytest
from google.protobuf import json_format

from semantic.indexer.events import Poison, decode_content, tenant_from_subject
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import events_pb2
from semantic.wire.convert import Limits

PB = {"Content-Type": "application/protobuf"}
JSON = {"Content-Type": "application/json"}


def _event(**changes: object) -> events_pb2.ContentEvent:
    event = events_pb2.ContentEvent(
        event_id="e1",
        op=events_pb2.CONTENT_OP_UPSERT,
        version=3,
        node=cpb.Node(id="n1", content_type="page", title="Title", body="Body", tags=["a", "a"]),
    )
    for name, value in changes.items():
        target, _, field = name.rpartition("__")
        holder = event.node if target == "node" else event
        setattr(holder, field or name, value)
    return event


def _decode(
    payload: bytes, headers: dict[str, str] | None = PB, subject: str = "semantic.content._.page"
):  # type: ignore[no-untyped-def]
    return decode_content(subject, headers, payload, max_bytes=4096, limits=Limits())


def _poison(
    payload: bytes, headers: dict[str, str] | None = PB, subject: str = "semantic.content._.page"
) -> Poison:
    with pytest.raises(Poison) as caught:
        _decode(payload, headers, subject)
    return caught.value


def test_protobuf_and_json_decode_to_the_same_change() -> None:
    event = _event()
    binary = _decode(event.SerializeToString())
    as_json = _decode(json_format.MessageToJson(event).encode(), JSON)
    no_header = _decode(event.SerializeToString(), None)
    assert binary == as_json == no_header
    assert binary.upsert
    assert (binary.tenant, binary.id, binary.version) == ("", "n1", 3)
    assert binary.node is not None
    assert binary.node.version == 3
    assert binary.node.tags == ("a",)


def test_json_accepts_original_field_names_and_enum_numbers() -> None:
    payload = b'{"event_id": "e2", "op": 2, "version": "4", "node": {"id": "gone"}}'
    change = _decode(payload, JSON)
    assert not change.upsert
    assert (change.id, change.version, change.node) == ("gone", 4, None)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"event_id": ""}, "event_id"),
        ({"event_id": "x" * 129}, "event_id"),
        ({"op": events_pb2.CONTENT_OP_UNSPECIFIED}, "op"),
        ({"version": 0}, "version"),
        ({"node__version": 2}, "node.version"),
        ({"node__content_type": ""}, "node.content_type"),
        ({"node__id": ""}, "node.id"),
    ],
)
def test_invalid_fields_are_poison_naming_the_field(changes: dict[str, object], field: str) -> None:
    poison = _poison(_event(**changes).SerializeToString())
    assert poison.reason == "invalid"
    assert poison.detail.startswith(field)


def test_undecodable_payloads_are_decode_errors() -> None:
    assert _poison(b"\xff\xff\xff").reason == "decode_error"
    assert _poison(b"{not json", JSON).reason == "decode_error"
    assert _poison(b'{"op": "CONTENT_OP_NOPE"}', JSON).reason == "decode_error"
    other_digits = _poison('{"eventId": "e", "version": "\u0667"}'.encode(), JSON)
    assert other_digits.reason == "decode_error"
    assert "version" in other_digits.detail
    assert _poison(b"x", {"Content-Type": "text/plain"}).reason == "decode_error"


def test_oversized_and_wrong_tenant_events() -> None:
    big = _event(node__body="word " * 2000).SerializeToString()
    assert _poison(big).reason == "too_large"
    other = _event(node__tenant="acme").SerializeToString()
    poison = _poison(other, subject="semantic.content.globex.page")
    assert poison.reason == "tenant_mismatch"
    assert "node.tenant" in poison.detail
    accepted = _decode(other, subject="semantic.content.acme.page")
    assert accepted.tenant == "acme"


def test_a_slug_alone_names_the_node() -> None:
    change = _decode(_event(node__id="", node__slug="welcome").SerializeToString())
    assert (change.id, change.slug, change.key) == ("", "welcome", ("", "slug:welcome"))


def test_subject_tenant_tokens() -> None:
    assert tenant_from_subject("semantic.content._.page", "semantic.content") == ""
    assert tenant_from_subject("semantic.content.acme.page", "semantic.content") == "acme"
    with pytest.raises(Poison):
        tenant_from_subject("semantic.other", "semantic.content")
