"""Hypothesis strategies for the messages the indexer consumes: ContentEvents and
UserEvents (realistic or built from the descriptor) as protobuf or protobuf-JSON, hostile
JSON and raw bytes, on the documented subjects or someone else's, with the encodings'
Content-Type headers or odd ones. The test gives each message a Nats-Msg-Id of its own
when it publishes it (to find it among the dead letters, and because JetStream would drop
a replayed example's message as a duplicate of the first)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace

from fuzz_strategies import content_events, generic, user_events
from fuzz_values import CONTENT_TYPES, Pools, hostile_strings
from fuzz_wire import raw_requests
from google.protobuf import json_format
from google.protobuf.message import Message
from hypothesis import strategies as st

from semantic.v1 import events_pb2 as evpb

MAX_PUBLISH_BYTES = 900_000  # below NATS's max payload (1 MiB)
PROTOBUF_TYPES = (None, "application/protobuf", "application/x-protobuf", "Application/Protobuf")
JSON_TYPES = ("application/json", "application/json; charset=utf-8")
ODD_TYPES = ("text/plain", "application/octet-stream", "application/xml", "json", "proto")


@dataclass(frozen=True)
class Publication:
    """One message for the indexer: where, with which headers, which bytes, and what
    the test knows of it (``kind`` content or user; ``encoding``)."""

    subject: str
    headers: dict[str, str]
    payload: bytes
    kind: str
    encoding: str

    def described(self) -> str:
        shown = self.payload[:300]
        more = f" ... ({len(self.payload)} bytes)" if len(self.payload) > 300 else ""
        return f"{self.subject} {self.headers} {self.encoding} {shown!r}{more}"


def tenant_token(tenant: str) -> str:
    """The documented subject token of a tenant, or ``bad`` when the tenant cannot be
    one (a dot, a wildcard, whitespace): that event then has a mismatched subject."""
    if not tenant:
        return "_"
    if any(c in tenant for c in ".*> \t\r\n\x00") or len(tenant) > 200:
        return "bad"
    return tenant


def hostile_json(kind: str) -> st.SearchStrategy[bytes]:
    """protobuf-JSON gone wrong: wrong types, huge or negative numbers, NaN, bad times,
    unknown enum names, duplicate keys, deep nesting, bad UTF-8, not an object."""
    odd_numbers = st.sampled_from(
        (1, "1", -1, 0, 2**63, 2**64, "18446744073709551616", 1e300, 1.5, "NaN", None, [], {})
    )
    times = st.sampled_from(
        (
            "2024-01-01T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:60Z",
            "+275760-09-13T00:00:00Z",
            "2024-02-30T00:00:00Z",
            "not a time",
            12345,
        )
    )
    text = st.one_of(st.sampled_from(("n1", "page:42", "")), hostile_strings())
    enums = st.sampled_from(("CONTENT_OP_UPSERT", "USER_ACTION_CLICK", 1, 2, 99, -1, "NOPE"))
    if kind == "content":
        obj = st.fixed_dictionaries(
            {"eventId": text, "op": enums, "version": odd_numbers},
            optional={
                "node": st.fixed_dictionaries(
                    {"id": text, "contentType": st.sampled_from(CONTENT_TYPES)},
                    optional={"title": text, "metadata": st.just({"a": [1, {"b": None}]})},
                ),
                "occurredAt": times,
                "source": text,
            },
        )
    else:
        obj = st.fixed_dictionaries(
            {"eventId": text, "userId": text, "nodeId": text, "action": enums},
            optional={"occurredAt": times, "weight": odd_numbers, "context": st.just({"p": 1})},
        )
    encoded = obj.map(lambda o: json.dumps(o).encode())
    return st.one_of(
        encoded,
        encoded,
        st.sampled_from((100, 1_000, 100_000)).map(lambda n: b"[" * n + b"]" * n),
        st.sampled_from((100, 5_000)).map(lambda n: b'{"eventId":' * n + b"1" + b"}" * n),
        st.just(b'{"eventId": "a", "eventId": "b", "version": 1}'),
        st.just(json.dumps({"eventId": "x", "version": math.nan}).encode()),
        st.just(b'{"eventId": "\xff\xfe"}'),
        st.sampled_from((b"", b"null", b"[]", b'"text"', b"1", b"{")),
    )


def _as_json(message: Message) -> bytes | None:
    try:
        return json_format.MessageToJson(message).encode()
    except (ValueError, TypeError, RecursionError, json_format.Error):
        return None  # NaN, a timestamp out of range, deep nesting: no JSON form


@st.composite
def publications(draw: st.DrawFn, pools: Pools) -> Publication:
    """A message on an indexer subject: a (realistic or generic) event as protobuf or
    protobuf-JSON, hostile JSON, or raw bytes; mostly on its documented subject."""
    kind = draw(st.sampled_from(("content", "content", "user")))
    cls = evpb.ContentEvent if kind == "content" else evpb.UserEvent
    realistic = content_events(pools) if kind == "content" else user_events(pools)
    event = draw(st.one_of(realistic, realistic, generic(cls, pools)))
    if kind == "content":
        node = event.node  # type: ignore[attr-defined]
        subject = f"semantic.content.{tenant_token(node.tenant)}.{tenant_token(node.content_type)}"
    else:
        subject = f"semantic.user.{tenant_token(event.tenant)}"  # type: ignore[attr-defined]
    if not draw(st.integers(0, 9)):  # now and then: someone else's tenant, odd tokens
        prefix = "semantic.content" if kind == "content" else "semantic.user"
        subject = f"{prefix}.{draw(st.sampled_from(('other', '_', 'ünï', 'a' * 100)))}"
        if kind == "content":
            subject += f".{draw(st.sampled_from(('_', 'page', 'Page')))}"
    encoding = draw(st.sampled_from(("protobuf", "protobuf", "json", "hostile_json", "raw")))
    if encoding == "json":
        as_json = _as_json(event)
        encoding = "json" if as_json is not None else "protobuf"
    if encoding == "protobuf":
        payload, media = event.SerializeToString(), draw(st.sampled_from(PROTOBUF_TYPES))
    elif encoding == "json":
        payload, media = as_json or b"", draw(st.sampled_from(JSON_TYPES))
    elif encoding == "hostile_json":
        payload, media = draw(hostile_json(kind)), draw(st.sampled_from(JSON_TYPES))
    else:
        payload = draw(raw_requests(cls.DESCRIPTOR, st.just(event)))
        media = draw(st.sampled_from((*PROTOBUF_TYPES, *JSON_TYPES, *ODD_TYPES)))
    headers = {} if media is None else {"Content-Type": media}
    publication = Publication(subject, headers, payload, kind, encoding)
    if len(payload) > MAX_PUBLISH_BYTES:  # too big for NATS: send it cut (undecodable)
        publication = replace(publication, payload=payload[:MAX_PUBLISH_BYTES])
    return publication
