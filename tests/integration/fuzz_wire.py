"""Raw protobuf wire bytes no message class would produce: random bytes, mangled valid
messages, strings of invalid UTF-8 (lone surrogates, overlong forms), wrong wire types,
broken varints and lengths, and nesting deeper than any decoder accepts."""

from __future__ import annotations

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

# Not UTF-8: a lone surrogate (CESU-8), an overlong "/", a stray continuation byte, a
# code point above U+10FFFF, a truncated sequence, Latin-1.
BAD_UTF8 = (
    b"\xed\xa0\x80",
    b"a\xed\xb2\x80b",
    b"\xc0\xaf",
    b"\x80",
    b"\xf4\x90\x80\x80",
    b"caf\xc3",
    b"caf\xe9",
    b"\xff\xfe\x00\x00",
)
LENGTH_DELIMITED = 2


def varint(value: int) -> bytes:
    """Base-128 varint of a non-negative value (negative: its 64-bit two's complement)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def key(number: int, wire_type: int) -> bytes:
    return varint((number << 3) | wire_type)


def length_delimited(number: int, payload: bytes) -> bytes:
    return key(number, LENGTH_DELIMITED) + varint(len(payload)) + payload


def string_paths(descriptor: Descriptor, depth: int = 0) -> list[tuple[FieldDescriptor, ...]]:
    """Every path of fields from ``descriptor`` to a string field (messages 3 deep)."""
    paths: list[tuple[FieldDescriptor, ...]] = []
    for fd in descriptor.fields:
        if fd.type == FieldDescriptor.TYPE_STRING:
            paths.append((fd,))
        elif fd.message_type is not None and depth < 3:
            paths.extend((fd, *rest) for rest in string_paths(fd.message_type, depth + 1))
    return paths


def wrap(path: tuple[FieldDescriptor, ...], leaf: bytes) -> bytes:
    """``leaf`` as the bytes of the last field of ``path``, inside its parents. A map
    entry's fields (key 1, value 2) are reached the same way as any message's."""
    payload = length_delimited(path[-1].number, leaf)
    for fd in reversed(path[:-1]):
        payload = length_delimited(fd.number, payload)
    return payload


def deep_groups(depth: int, number: int = 9_999) -> bytes:
    """An unknown field made of ``depth`` nested groups: every decoder recurses into it."""
    return key(number, 3) * depth + key(number, 4) * depth


def deep_struct(descriptor: Descriptor, depth: int) -> bytes | None:
    """A Struct nested ``depth`` times in the first Struct field reachable, if any."""
    for path in _struct_paths(descriptor):
        inner = b""
        for _ in range(depth):  # Struct.fields{"x": Value.struct_value(Struct)}
            entry = length_delimited(1, b"x") + length_delimited(2, length_delimited(5, inner))
            inner = length_delimited(1, entry)
        payload = inner
        for fd in reversed(path):
            payload = length_delimited(fd.number, payload)
        return payload
    return None


def _struct_paths(descriptor: Descriptor, depth: int = 0) -> list[tuple[FieldDescriptor, ...]]:
    paths: list[tuple[FieldDescriptor, ...]] = []
    for fd in descriptor.fields:
        if fd.message_type is None:
            continue
        if fd.message_type.full_name == "google.protobuf.Struct":
            paths.append((fd,))
        elif depth < 3 and not fd.message_type.GetOptions().map_entry:
            paths.extend((fd, *rest) for rest in _struct_paths(fd.message_type, depth + 1))
    return paths


@st.composite
def raw_requests(
    draw: st.DrawFn, descriptor: Descriptor, valid: st.SearchStrategy[Message]
) -> bytes:
    """Bytes sent as a request of ``descriptor`` whatever they hold: most cannot be
    decoded; some decode by chance into odd but well-formed messages."""
    kind = draw(
        st.sampled_from(
            ("random", "mangled", "bad_utf8", "wire_type", "varint", "length", "groups", "struct")
        )
    )
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=256))
    base = draw(valid).SerializeToString()
    if kind == "mangled" and base:
        cut = draw(st.integers(0, len(base) - 1))
        flip = draw(st.integers(1, 255))
        return draw(
            st.sampled_from(
                (
                    base[:cut],
                    base[:cut] + bytes([base[cut] ^ flip]) + base[cut + 1 :],
                    base + b"\x80",
                )
            )
        )
    if kind == "bad_utf8":
        paths = string_paths(descriptor)
        if paths:
            path = draw(st.sampled_from(paths))
            return base + wrap(path, draw(st.sampled_from(BAD_UTF8)))
    if kind == "wire_type" and descriptor.fields:
        fd = draw(st.sampled_from(list(descriptor.fields)))
        wire_type = draw(st.sampled_from((0, 1, 2, 5, 3, 4, 6, 7)))
        return base + key(fd.number, wire_type) + draw(st.binary(max_size=9))
    if kind == "varint":
        # 11 continuation bytes: longer than any varint may be.
        return base + key(1, 0) + b"\xff" * 11 + b"\x01"
    if kind == "length":
        number = descriptor.fields[0].number if descriptor.fields else 1
        return base + key(number, LENGTH_DELIMITED) + varint(2**31) + b"abc"
    if kind == "struct":
        deep = deep_struct(descriptor, draw(st.sampled_from((99, 100, 101, 500))))
        if deep is not None:
            return base + deep
    return base + deep_groups(draw(st.sampled_from((64, 100, 101, 10_000))))
