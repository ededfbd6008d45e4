"""Protobuf -> domain conversion at the edge: each bad value is InvalidArgument naming its
field path, and each bad event is poison naming it; good values convert as before."""

from datetime import UTC, datetime
from typing import Any

import pytest
from google.protobuf import json_format, struct_pb2
from nats.aio.msg import Msg

from semantic.common.errors import InvalidArgument
from semantic.core.recommend.settings import RecommendSettings
from semantic.core.recommend.tracker import Tracker
from semantic.indexer.events import Poison, decode_content
from semantic.indexer.users import UserEventHandler
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import events_pb2
from semantic.wire import convert

LIMITS = convert.Limits()
DIM = 4


def _node(**fields: Any) -> cpb.Node:
    metadata = fields.pop("metadata", None)
    base: dict[str, Any] = {"id": "n1", "content_type": "page", "title": "T", "body": "B"}
    node = cpb.Node(**{**base, **fields})
    if metadata is not None:
        node.metadata.update(metadata)
    return node


def _vector(
    name: str = "code",
    chunk: int = 0,
    values: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0),
    **span: int,
) -> cpb.NamedVector:
    return cpb.NamedVector(
        name=name, chunk_index=chunk, vector=cpb.Vector(values=values), span=cpb.TextSpan(**span)
    )


def _rejected(node: cpb.Node) -> str:
    with pytest.raises(InvalidArgument) as caught:
        convert.node_from_proto(node, "nodes[3]", "", DIM, LIMITS)
    return str(caught.value)


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


def test_a_good_node_converts_with_metadata_as_sent() -> None:
    metadata = {"price": 12.5, "tags": ["a", 1, True, None], "nested": {"x": "y"}, "n": None}
    record, vectors = convert.node_from_proto(
        _node(metadata=metadata, tags=["a", "b", "a"], vectors=[_vector(), _vector(chunk=1)]),
        "nodes[0]",
        "acme",
        DIM,
        LIMITS,
    )
    assert record.metadata == json_format.MessageToDict(_node(metadata=metadata).metadata)
    assert record.tags == ("a", "b")
    assert [(v.name, v.chunk) for v in vectors] == [("code", 0), ("code", 1)]


@pytest.mark.parametrize(
    ("node", "message"),
    [
        (_node(metadata={"price": float("nan")}), "nodes[3].metadata.price: must be a finite"),
        (_node(metadata={"a": {"b": [1, float("inf")]}}), "nodes[3].metadata.a.b[1]: must be"),
        (_node(metadata={"a": "x\x00y"}), "nodes[3].metadata.a: must not contain NUL"),
        (_node(metadata={"a\x00": 1}), "nodes[3].metadata: object keys must not contain NUL"),
        (_node(metadata={"": 1}), "nodes[3].metadata: object keys must not be empty"),
        (_node(metadata=_nested(33)), "is nested deeper than 32 levels"),
        (_node(metadata={"big": "x" * 70_000}), "nodes[3].metadata: is larger than 65536"),
        (_node(version=2**63), "nodes[3].version: must be between 0 and"),
        (_node(id="x" * 400), "nodes[3].id: is longer than 256"),
        (_node(id="a\x00"), "nodes[3].id: must not contain control"),
        (_node(content_type="Page X!"), "nodes[3].content_type: 'Page X!' must match"),
        (_node(slug="has space"), "nodes[3].slug: must not contain whitespace"),
        (_node(title="t" * 1001), "nodes[3].title: is longer than 1000"),
        (_node(body="a\x00b"), "nodes[3].body: must not contain NUL"),
        (_node(texts={"Code": "x"}), "nodes[3].texts: 'Code' must match"),
        (_node(texts={"code": "\x00"}), "nodes[3].texts[code]: must not contain NUL"),
        (_node(tags=["ok", "a\x00"]), "nodes[3].tags[1]: must not contain NUL"),
        (_node(tags=[""]), "nodes[3].tags[0]: must not be empty"),
        (_node(tags=[str(i) for i in range(65)]), "nodes[3].tags: holds 65 entries"),
        (
            _node(vectors=[_vector(chunk=1024)]),
            "nodes[3].vectors[0].chunk_index: must be between 0 and 1023",
        ),
        (_node(vectors=[_vector(start=0, end=2**31)]), "nodes[3].vectors[0].span.end"),
        (_node(vectors=[_vector(start=5, end=2)]), "nodes[3].vectors[0].span: end must not"),
        (_node(vectors=[_vector(name="Bad")]), "nodes[3].vectors[0].name"),
        (
            _node(vectors=[_vector(), _vector(name="title"), _vector()]),
            "nodes[3].vectors[2]: repeats the name and chunk_index of nodes[3].vectors[0]",
        ),
        (
            _node(texts={"code": "x"}, vectors=[_vector()]),
            "nodes[3].vectors[0].name: 'code' is in texts too",
        ),
        # Cosine similarity in float32: squares of these underflow or overflow (NaN scores).
        (_node(vectors=[_vector(values=(1e-45,) * 4)]), "nodes[3].vectors[0].vector: has length"),
        (_node(vectors=[_vector(values=(3.4e38,) * 4)]), "nodes[3].vectors[0].vector: has length"),
        (_node(vectors=[_vector(values=(2e6, 0, 0, 0))]), "must be between 1e-06 and 1e+06"),
        (_node(vectors=[_vector(values=(0.0,) * 4)]), "nodes[3].vectors[0].vector: is all zeros"),
    ],
)
def test_a_bad_node_names_the_field(node: cpb.Node, message: str) -> None:
    assert message in _rejected(node)


def test_boundaries_that_are_allowed() -> None:
    node = _node(
        version=2**63 - 1,
        id="x" * 256,
        title="t" * 1000,
        tags=[str(i) for i in range(64)],
        metadata=_nested(32),
        vectors=[_vector(chunk=1023, start=0, end=2**31 - 1)],
    )
    node.created_at.FromDatetime(datetime(9999, 12, 31, tzinfo=UTC))
    record, vectors = convert.node_from_proto(node, "nodes[0]", "", DIM, LIMITS)
    assert record.version == 2**63 - 1
    assert vectors[0].chunk == 1023
    for length in (1.01e-6, 9.9e5):  # just inside the lengths cosine in float32 allows
        node = _node(vectors=[_vector(values=(length, 0.0, 0.0, 0.0))])
        _, vectors = convert.node_from_proto(node, "nodes[0]", "", DIM, LIMITS)
        assert vectors[0].embedding[0] == pytest.approx(length, rel=1e-6)


def test_a_created_at_beyond_year_9999_is_invalid() -> None:
    node = _node()
    node.created_at.seconds = 253_402_300_800
    assert "nodes[3].created_at: must be between the years 1 and 9999" in _rejected(node)


def _filter_problem(flt: cpb.Filter) -> str:
    with pytest.raises(InvalidArgument) as caught:
        convert.filter_from_proto(flt, "filter", LIMITS)
    return str(caught.value)


def test_bad_filter_values_name_their_field() -> None:
    nan = struct_pb2.Value(number_value=float("nan"))
    assert _filter_problem(
        cpb.Filter(metadata=[cpb.MetadataCondition(key="a", equals=nan)])
    ).startswith("filter.metadata[0].equals: must be a finite number")
    values = struct_pb2.ListValue()
    values.extend(["ok", float("inf")])
    assert _filter_problem(
        cpb.Filter(metadata=[cpb.MetadataCondition(key="a", any_of=values)])
    ).startswith("filter.metadata[0].any_of[1]: must be a finite number")
    assert _filter_problem(
        cpb.Filter(
            metadata=[cpb.MetadataCondition(key="a", number_range=cpb.NumberRange(gt=1e400))]
        )
    ).startswith("filter.metadata[0].number_range.gt: must be a finite number")
    late = cpb.TimeRange()
    late.start.seconds = 2**40
    assert _filter_problem(cpb.Filter(created=late)).startswith("filter.created.start: must be")
    bad_nanos = cpb.TimeRange()
    bad_nanos.end.nanos = -1
    assert _filter_problem(
        cpb.Filter(metadata=[cpb.MetadataCondition(key="t", time_range=bad_nanos)])
    ).startswith("filter.metadata[0].time_range.end.nanos:")
    assert _filter_problem(cpb.Filter(content_types=["page", "Page X!"])).startswith(
        "filter.content_types[1]:"
    )
    assert _filter_problem(cpb.Filter(tags_all=["a\x00"])).startswith("filter.tags_all[0]:")
    assert _filter_problem(cpb.Filter(exclude_ids=["x" * 300])).startswith("filter.exclude_ids[0]:")
    assert _filter_problem(cpb.Filter(ids=["i"] * 10_001)).startswith("filter.ids: holds 10001")


def test_content_type_shorthand_narrows_the_filter() -> None:
    flt = convert.filter_from_proto(cpb.Filter(content_types=["page", "faq"]), "filter", LIMITS)
    assert convert.with_content_types(flt, ["faq", "quiz"], "content_types").content_types == (
        "faq",
    )
    disjoint = convert.with_content_types(flt, ["quiz"], "content_types")
    assert disjoint.content_types == (convert.NO_CONTENT_TYPE,)
    with pytest.raises(InvalidArgument) as caught:
        convert.with_content_types(flt, ["ok", "No"], "content_types")
    assert caught.value.field == "content_types[1]"


# --- events --------------------------------------------------------------------------------


def _event(**changes: Any) -> events_pb2.ContentEvent:
    event = events_pb2.ContentEvent(
        event_id="e1",
        op=events_pb2.CONTENT_OP_UPSERT,
        version=3,
        node=cpb.Node(id="n1", content_type="page", title="Title", body="Body"),
    )
    for name, value in changes.items():
        target, _, field = name.rpartition("__")
        holder = event.node if target == "node" else event
        setattr(holder, field or name, value)
    return event


def _poison(payload: bytes, subject: str = "semantic.content._.page", json: bool = False) -> Poison:
    headers = {"Content-Type": "application/json" if json else "application/protobuf"}
    with pytest.raises(Poison) as caught:
        decode_content(subject, headers, payload, max_bytes=1 << 20, limits=LIMITS)
    return caught.value


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"version": 2**63}, "version: must be between 1 and"),
        ({"node__tenant": "../x y"}, "node.tenant: '../x y' is not a tenant name"),
        ({"node__content_type": "Page X!"}, "node.content_type:"),
        ({"node__id": "x" * 400}, "node.id: is longer than 256"),
        ({"node__title": "a\x00b"}, "node.title: must not contain NUL"),
        ({"event_id": "e\x00"}, "event_id: must not contain control"),
        ({"source": "s" * 129}, "source: is longer than 128"),
        ({"node__id": "", "node__slug": "s" * 300}, "node.slug: is longer than 256"),
        ({"op": events_pb2.CONTENT_OP_DELETE, "node__slug": "a b"}, "node.slug:"),
    ],
)
def test_bad_content_events_are_invalid_poison_naming_the_field(
    changes: dict[str, Any], detail: str
) -> None:
    poison = _poison(_event(**changes).SerializeToString())
    assert poison.reason == "invalid"
    assert poison.detail.startswith(detail), poison.detail


def test_timestamps_and_non_finite_metadata_in_events_are_invalid_poison() -> None:
    event = _event()
    event.occurred_at.seconds = -62_135_596_801
    poison = _poison(event.SerializeToString())
    assert (poison.reason, poison.detail.split(":")[0]) == ("invalid", "occurred_at")
    event = _event()
    event.occurred_at.nanos = 1_000_000_000
    assert _poison(event.SerializeToString()).detail.startswith("occurred_at.nanos:")
    payload = (
        b'{"eventId": "e1", "op": "CONTENT_OP_UPSERT", "version": 1, "node": {"id": "n",'
        b' "contentType": "page", "metadata": {"price": NaN}}}'
    )
    poison = _poison(payload, json=True)
    assert poison.reason == "invalid"
    assert poison.detail.startswith("node.metadata.price: must be a finite number")


def test_a_valid_event_still_decodes() -> None:
    event = _event(version=2**63 - 1)
    event.node.metadata.update({"price": 3})
    event.occurred_at.FromDatetime(datetime(2026, 1, 1, tzinfo=UTC))
    change = decode_content(
        "semantic.content._.page", None, event.SerializeToString(), max_bytes=4096, limits=LIMITS
    )
    assert change.version == 2**63 - 1
    assert change.node is not None
    assert change.node.metadata == {"price": 3.0}


def _user_poison(event: events_pb2.UserEvent, subject: str = "semantic.user._") -> Poison:
    tracker = Tracker(None, RecommendSettings().track_config())  # type: ignore[arg-type]
    handler = UserEventHandler(None, tracker, max_bytes=4096)  # type: ignore[arg-type]
    msg = Msg(None, subject=subject, data=event.SerializeToString())  # type: ignore[arg-type]
    with pytest.raises(Poison) as caught:
        handler.decode(msg)
    return caught.value


def test_bad_user_events_are_invalid_poison_naming_the_field() -> None:
    def event(**fields: Any) -> events_pb2.UserEvent:
        message = events_pb2.UserEvent(
            event_id="u1", user_id="u-1", node_id="n1", action=events_pb2.USER_ACTION_VIEW
        )
        for name, value in fields.items():
            setattr(message, name, value)
        return message

    assert _user_poison(event(user_id="u\x00")).detail.startswith("user_id: must not contain")
    assert _user_poison(event(node_id="n" * 300)).detail.startswith("node_id: is longer")
    assert _user_poison(event(weight=float("nan"))).detail.startswith("weight: must be a finite")
    reserved = _user_poison(event(archetype="derived_1")).detail
    assert reserved.startswith("archetype: labels starting with 'derived_' are reserved")
    late = event()
    late.occurred_at.seconds = 2**40
    assert _user_poison(late).detail.startswith("occurred_at: must be between the years")
    context = event()
    context.context.update({"position": float("inf")})
    assert _user_poison(context).detail.startswith("context.position: must be a finite")
    tenant = _user_poison(event(tenant="bad tenant"))
    assert (tenant.reason, tenant.detail.split(":")[0]) == ("invalid", "tenant")
