"""Hypothesis building blocks of the fuzz suite: realistic and hostile values, and any
protobuf message built field by field from its descriptor.

Every string, number, timestamp, Struct and vector drawn here is either realistic (known
ids, content types, real prose: it reaches the code behind validation) or hostile (NUL,
control characters, huge strings, 2^63, negative numbers, NaN/inf, timestamps out of
range, unknown enum values, empty everything, deep nesting). Which is which is decided by
the field's name, through :class:`Pools`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from google.protobuf import message_factory, struct_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

DIM = 384
CONTENT_TYPES = ("page", "offer", "cta", "quiz", "article", "blog_post", "product", "module")
PROSE = (
    "Use Cache-Control headers and ETags to cache responses.",
    "Flour, eggs and a rolling pin make silky tagliatelle.",
    "Automate certificate renewal with ACME before expiry.",
    "A starter, flour, water and salt; long fermentation.",
    "B-tree indexes speed up lookups; HNSW indexes find vectors.",
    "Wie man Sauerteigbrot backt: Mehl, Wasser, Salz und Geduld.",
    "Comment renouveler un certificat TLS avant son expiration ?",
    "東京で一番おいしいラーメン屋はどこですか。",
    "Cheap flights to Lisbon in spring, with a carry-on bag only.",
    "Reset your password from the account page, then sign in again.",
)
# Strings known to trip parsers, NATS subjects, SQL, JSON paths and file paths.
NASTY = (
    " ",
    "\t\n",
    "\x00",
    "a\x00b",
    "\x1b[31m",
    "\u200b",
    "\ufeff",
    "\u202e",
    "e\u0301",
    "😀",
    "../../etc/passwd",
    "%s%n%x",
    "'; DROP TABLE semantic.nodes; --",
    "\\",
    '"',
    "{}",
    "null",
    "NaN",
    "-1",
    "18446744073709551616",
    "a.b",
    "a..b",
    ".",
    "*",
    ">",
    "_",
    "semantic.content.>",
    "$.a[*]",
    "a" * 65,
)
# Sizes just above the documented limits (ids 256/512, tags 128, titles 1,000, queries
# 10,000, embedder texts 32,768 and 100,000, bodies 1,000,000) and plainly huge.
HUGE_SIZES = (65, 129, 257, 513, 1_001, 10_001, 32_769, 100_001)
BODY_SIZES = (*HUGE_SIZES, 1_000_001)
FILLERS = ("a", "é", "😀", "\x00", " ", "word ")
# Lists just above the documented counts (tags 64, texts 256, nodes 500, ids 1,000 and
# 10,000), capped in bytes so a request stays a few MB.
LONG_LISTS = (65, 257, 501, 1_001, 10_001)
MAX_LIST_BYTES = 4 * 1024 * 1024

INT_RANGES = {
    FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
}
INT_EDGES = (0, 1, 2, -1, 7, 10, 100, 501, 1_001, 10_001, 2**31 - 1, 2**31, 2**32 - 1)
INT_EDGES += (2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, -(2**31), -(2**63))
FLOAT_EDGES = (0.0, -0.0, 1.0, -1.0, 0.5, 1e-3, 100.0, 101.0, 1e308, -1e308, 5e-324)
FLOAT_EDGES += (math.nan, math.inf, -math.inf, 3.4028235e38, 1e-45)
# Timestamp seconds: realistic (2024/2025), the proto range's edges and beyond them.
TIMESTAMP_SECONDS = (1_704_067_200, 1_735_689_600, 1_750_000_000, 0, -1)
TIMESTAMP_SECONDS += (-62_135_596_800, -62_135_596_801, 253_402_300_799, 253_402_300_800)
TIMESTAMP_SECONDS += (4_102_444_800, 2**63 - 1, -(2**63), 2**40)
NANOS = (0, 1, 999_999_999, 1_000_000_000, -1, 2**31 - 1, -(2**31))


@dataclass(frozen=True)
class Pools:
    """Realistic values the services know, so valid requests reach the code behind
    validation (ids that exist, served models, spaces that may exist)."""

    ids: tuple[str, ...] = ("n1", "n2", "n3", "page:42", "3f1c2b8e-5c1d-4a7e-9a0b-1c2d3e4f5a6b")
    slugs: tuple[str, ...] = ("blog/how-to-reset", "pricing", "n1-page")
    tenants: tuple[str, ...] = ("", "", "acme", "globex")
    tags: tuple[str, ...] = ("kb", "baking", "security", "sale")
    vector_names: tuple[str, ...] = ("content", "title", "problem", "code")
    users: tuple[str, ...] = ("u1", "u2", "visitor-7f3a")
    archetypes: tuple[str, ...] = ("budget_traveller", "home_cook")
    metadata_keys: tuple[str, ...] = ("rank", "lang", "author.name", "price", "published")
    space_ids: tuple[str, ...] = ("1", "2", "3", "4")
    model_ids: tuple[str, ...] = ("sentence-transformers/all-MiniLM-L6-v2",)
    model_dirs: tuple[str, ...] = ("/nonexistent/model",)


def sized(sizes: tuple[int, ...] = HUGE_SIZES) -> st.SearchStrategy[str]:
    """A string of exactly one of ``sizes`` characters (one repeated filler)."""
    return st.builds(
        lambda fill, n: (fill * n)[:n], st.sampled_from(FILLERS), st.sampled_from(sizes)
    )


def hostile_strings(sizes: tuple[int, ...] = HUGE_SIZES) -> st.SearchStrategy[str]:
    """Empty, whitespace, NUL, control and odd characters, huge; never a lone surrogate
    (protobuf strings cannot hold one: bad UTF-8 is made on the wire, see fuzz_wire)."""
    return st.one_of(
        st.just(""),
        st.sampled_from(NASTY),
        st.text(max_size=40),
        sized(sizes),
    )


def prose() -> st.SearchStrategy[str]:
    """Real sentences, alone or joined."""
    return st.lists(st.sampled_from(PROSE), min_size=1, max_size=4).map(" ".join)


def realistic_or_hostile(
    realistic: st.SearchStrategy[str], sizes: tuple[int, ...] = HUGE_SIZES
) -> st.SearchStrategy[str]:
    """Mostly realistic (twice the weight), sometimes hostile."""
    return st.one_of(realistic, realistic, hostile_strings(sizes))


def uuids() -> st.SearchStrategy[str]:
    return st.uuids().map(str)


def string_values(name: str, pools: Pools) -> st.SearchStrategy[str]:
    """The strings of a field called ``name``: realistic by meaning, or hostile."""
    pick = st.sampled_from
    by_name: dict[str, st.SearchStrategy[str]] = {
        "tenant": pick(pools.tenants),
        "content_type": pick(CONTENT_TYPES),
        "content_types": pick(CONTENT_TYPES),
        "name": pick(pools.vector_names),
        "vector_name": pick(pools.vector_names),
        "slug": pick(pools.slugs),
        "slugs": pick(pools.slugs),
        "space_id": pick(pools.space_ids),
        "model_id": pick(pools.model_ids),
        "base_model_id": pick(pools.model_ids),
        "model_dir": pick(pools.model_dirs),
        "user_id": pick(pools.users),
        "archetype": pick(pools.archetypes),
        "key": pick(pools.metadata_keys),
        "source": pick(("cms", "shop", "quiz-builder", "tests")),
        "texts.key": pick(pools.vector_names),
    }
    for id_field in ("id", "ids", "node_id", "exclude_ids", "source_id"):
        by_name[id_field] = pick(pools.ids)
    for tag_field in ("tags", "tags_any", "tags_all", "tags_none"):
        by_name[tag_field] = pick(pools.tags)
    for id_field in ("event_id", "request_id", "session_id", "recommendation_id"):
        by_name[id_field] = uuids()
    for text_field in ("title", "body", "text", "texts", "chunk_text", "query_prefix"):
        by_name[text_field] = prose()
    sizes = BODY_SIZES if name in {"body", "texts", "text", "title"} else HUGE_SIZES
    realistic = by_name.get(name, st.sampled_from(PROSE[0].split()))
    return realistic_or_hostile(realistic, sizes)


def int_values(name: str, cpp_type: int) -> st.SearchStrategy[int]:
    """Small realistic numbers, the type's edges, and anything in its range."""
    low, high = INT_RANGES[cpp_type]
    edges = [v for v in INT_EDGES if low <= v <= high]
    realistic = st.integers(0, 12)
    if name == "dim":
        realistic = st.sampled_from((0, DIM, DIM - 1, DIM + 1))
    return st.one_of(realistic, realistic, st.sampled_from(edges), st.integers(low, high))


def float_values(width: int = 64) -> st.SearchStrategy[float]:
    realistic = st.floats(-2.0, 2.0, width=width)
    edges = [v for v in FLOAT_EDGES if width == 64 or not math.isfinite(v) or abs(v) < 3.4e38]
    return st.one_of(
        realistic,
        realistic,
        st.sampled_from(edges),
        st.floats(width=width, allow_nan=True, allow_infinity=True),
    )


def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """A JSON-like value for a Struct: NaN, inf, 2^63 and friends among the numbers,
    hostile keys ("", ".", NUL, huge), nesting."""
    keys = st.one_of(
        st.sampled_from(("rank", "lang", "author", "name", "price")), hostile_strings()
    )
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        float_values(),
        st.sampled_from((2**63, -(2**63), 2**64, 2**53 + 1, 10**400 // 10**300)).map(float),
        string_values("value", Pools()),
    )
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)
        ),
        max_leaves=max_leaves,
    )


def nested(depth: int) -> dict[str, Any]:
    """``{"x": {"x": ... {}}}``, ``depth`` levels deep."""
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"x": value}
    return value


def structs() -> st.SearchStrategy[dict[str, Any]]:
    """The content of a google.protobuf.Struct: realistic, hostile or deeply nested (the
    decoders' limit is 100 levels)."""
    realistic = st.fixed_dictionaries(
        {},
        optional={
            "rank": st.integers(0, 10).map(float),
            "lang": st.sampled_from(("en", "de", "fr")),
            "price": st.floats(0, 500),
            "author": st.fixed_dictionaries({"name": st.sampled_from(("Ada", "Linus"))}),
            "published": st.sampled_from(("2024-05-01T10:00:00Z", "not a date")),
        },
    )
    hostile = st.dictionaries(
        st.one_of(st.sampled_from(("rank", "lang")), hostile_strings()), json_values(), max_size=5
    )
    deep = st.sampled_from((30, 60, 98, 99, 100, 101, 150, 400)).map(nested)
    return st.one_of(realistic, realistic, hostile, deep)


def packed(values: list[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def seeded_vector(seed: int, dim: int = DIM) -> list[float]:
    """A random direction of ``dim`` float32 values (cheap to draw: one integer)."""
    values = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return [float(v) for v in values]


def vector_floats(dim: int = DIM) -> st.SearchStrategy[list[float]]:
    """A vector's values: a right-sized realistic one, or wrong size, zeros, NaN, inf."""
    seeds = st.integers(0, 2**32 - 1)
    right = seeds.map(lambda seed: seeded_vector(seed, dim))
    return st.one_of(
        right,
        right,
        st.lists(st.floats(-1, 1, width=32), max_size=8),
        st.just([0.0] * dim),
        st.builds(lambda v, bad: [bad, *v[1:]], right, st.sampled_from((math.nan, math.inf))),
        seeds.map(lambda seed: seeded_vector(seed, dim + 1)),
    )


@st.composite
def vector_messages(draw: st.DrawFn, cls: type[Message], dim: int = DIM) -> Message:
    """A semantic.v1.Vector: packed or values (or both, or neither), dim right or wrong."""
    vector = cls()
    values = draw(vector_floats(dim))
    form = draw(st.sampled_from(("packed", "packed", "values", "both", "neither", "ragged")))
    if form in ("packed", "both"):
        vector.packed = packed(values)  # type: ignore[attr-defined]
    if form in ("values", "both"):
        vector.values.extend(values)  # type: ignore[attr-defined]
    if form == "ragged":
        vector.packed = packed(values) + draw(st.binary(min_size=1, max_size=3))  # type: ignore[attr-defined]
    if draw(st.booleans()):
        vector.dim = draw(st.sampled_from((len(values), dim, 0, 1, 2**32 - 1)))  # type: ignore[attr-defined]
    return vector


Override = Callable[[Descriptor, "Pools", int], st.SearchStrategy[Message]]
"""A hand-made strategy for one message type, used beside the generic one."""


def class_of(descriptor: Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)


@st.composite
def messages(
    draw: st.DrawFn,
    descriptor: Descriptor,
    pools: Pools,
    depth: int = 0,
    overrides: dict[str, Override] | None = None,
) -> Message:
    """Any message of ``descriptor``: each field set or not, each value realistic or
    hostile, oneofs holding one member or none, repeated fields empty, short or huge."""
    overrides = overrides or {}
    hand_made = overrides.get(descriptor.full_name)
    if hand_made is not None and draw(st.booleans()):
        return draw(hand_made(descriptor, pools, depth))
    msg = class_of(descriptor)()
    chosen_members = {
        oneof.name: draw(st.sampled_from([None, *oneof.fields])) for oneof in descriptor.oneofs
    }
    for fd in descriptor.fields:
        if fd.containing_oneof is not None:
            if chosen_members[fd.containing_oneof.name] is not fd:
                continue
        elif not draw(st.booleans()):
            continue
        _fill(draw, msg, fd, pools=pools, depth=depth, overrides=overrides)
    return msg


def _fill(
    draw: st.DrawFn,
    msg: Message,
    fd: FieldDescriptor,
    *,
    pools: Pools,
    depth: int,
    overrides: dict[str, Override],
) -> None:
    target = getattr(msg, fd.name)
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        key_fd, value_fd = (
            fd.message_type.fields_by_name["key"],
            fd.message_type.fields_by_name["value"],
        )
        for _ in range(draw(st.integers(0, 3))):
            key = draw(_scalar(key_fd, pools, name=f"{fd.name}.key"))
            if value_fd.message_type is not None:
                target[key].CopyFrom(draw(_message_value(value_fd, pools, depth, overrides)))
            else:
                target[key] = draw(_scalar(value_fd, pools, name=fd.name))
        return
    if fd.is_repeated:
        count = draw(st.one_of(st.integers(0, 4), st.integers(0, 4), st.sampled_from(LONG_LISTS)))
        if fd.message_type is not None:
            if depth >= 3:
                return
            items = [
                draw(_message_value(fd, pools, depth, overrides)) for _ in range(min(count, 4))
            ]
            for item in repeat(items, count, sum(i.ByteSize() for i in items)):
                target.add().CopyFrom(item)
        else:
            values = [draw(_scalar(fd, pools)) for _ in range(min(count, 4))]
            target.extend(
                repeat(
                    values, count, sum(len(v) if isinstance(v, (str, bytes)) else 8 for v in values)
                )
            )
        return
    if fd.message_type is not None:
        if depth < 4:
            target.CopyFrom(draw(_message_value(fd, pools, depth, overrides)))
        return
    setattr(msg, fd.name, draw(_scalar(fd, pools)))


def repeat(items: list[Any], count: int, items_bytes: int) -> list[Any]:
    """``count`` items cycling through ``items`` (so long lists hold duplicates), fewer
    when they would exceed MAX_LIST_BYTES."""
    if not items:
        return []
    per_item = max(1, items_bytes // len(items))
    count = min(count, max(len(items), MAX_LIST_BYTES // per_item))
    return [items[i % len(items)] for i in range(count)]


def _message_value(
    fd: FieldDescriptor, pools: Pools, depth: int, overrides: dict[str, Override]
) -> st.SearchStrategy[Message]:
    full = fd.message_type.full_name
    cls = class_of(fd.message_type)
    if full == "google.protobuf.Struct":
        return structs().map(lambda d: _struct(cls, d))
    if full == "google.protobuf.Value":
        return json_values().map(lambda v: _struct(struct_pb2.Struct, {"v": v}).fields["v"])
    if full == "google.protobuf.ListValue":
        return st.lists(json_values(), max_size=5).map(
            lambda v: _struct(struct_pb2.Struct, {"v": v}).fields["v"].list_value
        )
    if full == "google.protobuf.Timestamp":
        return st.builds(
            lambda s, n: cls(seconds=s, nanos=n),
            st.sampled_from(TIMESTAMP_SECONDS),
            st.one_of(st.just(0), st.sampled_from(NANOS)),
        )
    return messages(fd.message_type, pools, depth + 1, overrides)


def _struct(cls: type[Message], content: dict[str, Any]) -> Message:
    value = cls()
    value.update(content)  # type: ignore[attr-defined]
    return value


def _scalar(fd: FieldDescriptor, pools: Pools, name: str | None = None) -> st.SearchStrategy[Any]:
    name = name or fd.name
    cpp = fd.cpp_type
    if cpp == FieldDescriptor.CPPTYPE_STRING:
        if fd.type == FieldDescriptor.TYPE_BYTES:
            return st.one_of(
                vector_floats().map(packed),
                st.binary(max_size=64),
                st.just(b"\x00\x00\xc0\x7f" * DIM),
            )
        return string_values(name, pools)
    if cpp in INT_RANGES:
        return int_values(name, cpp)
    if cpp == FieldDescriptor.CPPTYPE_DOUBLE:
        return float_values(64)
    if cpp == FieldDescriptor.CPPTYPE_FLOAT:
        return float_values(32)
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        return st.booleans()
    if cpp == FieldDescriptor.CPPTYPE_ENUM:
        known = [v.number for v in fd.enum_type.values]
        return st.one_of(
            st.sampled_from(known), st.sampled_from(known), st.integers(-(2**31), 2**31 - 1)
        )
    raise TypeError(f"no strategy for field {fd.full_name} of C++ type {cpp}")
