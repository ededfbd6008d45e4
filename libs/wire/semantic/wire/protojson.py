"""Protobuf messages to and from JSON, as the proto3 JSON mapping defines it.

One place for the HTTP API (and anything else speaking protobuf-JSON) to read a request
body into a message, refusing what the mapping refuses with InvalidArgument, and to write a
message: lowerCamelCase names, default values left out, enums by name.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from semantic.common.errors import InvalidArgument
from semantic.common.validation import unique_keys

M = TypeVar("M", bound=Message)


def parse(
    payload: bytes | str, message: M, *, field: str = "body", names: set[str] | None = None
) -> M:
    """Fill ``message`` from protobuf-JSON; InvalidArgument(``field``) when it cannot be.

    Unknown fields are refused (a typo must not be silently ignored); both the JSON names
    (``topK``) and the proto names (``top_k``) are accepted. ``names`` collects the field
    names the payload used (so an error found later can name a field as it was sent).
    """
    try:
        text = payload.decode("utf-8") if isinstance(payload, bytes) else payload
        # parsed once, for both uses
        value = json.loads(text, object_pairs_hook=unique_keys, parse_int=_integer)
    except UnicodeDecodeError as exc:
        raise InvalidArgument(field, f"not UTF-8: {exc.reason} at byte {exc.start}") from exc
    except (ValueError, RecursionError) as exc:
        raise InvalidArgument(field, f"Failed to load JSON: {_reason(exc)}.") from exc
    return parse_dict(value, message, field=field, names=names)


_INTEGER_DIGITS = 40
"""More digits than any integer field holds (uint64: 20): such a literal is read as a
number, so a double field takes it (or, beyond a double's range, refuses it naming the
field) instead of failing to convert it to float."""


def _integer(text: str) -> int | float:
    return int(text) if len(text) <= _INTEGER_DIGITS else float(text)


_SPECIAL_JSON = frozenset(
    {
        "google.protobuf.Struct",
        "google.protobuf.Value",
        "google.protobuf.ListValue",
        "google.protobuf.Timestamp",
        "google.protobuf.Duration",
        "google.protobuf.FieldMask",
        "google.protobuf.Any",
        *(
            f"google.protobuf.{name}Value"
            for name in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool")
        ),
        "google.protobuf.StringValue",
        "google.protobuf.BytesValue",
    }
)
"""Well-known types with a JSON form of their own (a string, a number, any JSON value)."""


def _check_shape(value: Any, descriptor: Any, path: str, names: set[str]) -> None:
    """What the library's parser lets through: a message that is not a JSON object (``[]``
    for the whole body or for a message field) and one field given under both its names
    (``top_k`` and ``topK``: which one counted depended on their order)."""
    if not isinstance(value, dict):
        raise InvalidArgument(path, "must be a JSON object")
    seen: dict[str, str] = {}
    for key, item in value.items():
        described = descriptor.fields_by_camelcase_name.get(key) or descriptor.fields_by_name.get(
            key
        )
        if described is None:
            continue  # the library refused unknown names already
        names.add(key)
        other = seen.setdefault(described.name, key)
        named = described.json_name if path == "body" else f"{path}.{described.json_name}"
        if other != key:
            raise InvalidArgument(named, f"given as {other!r} and {key!r}")
        kind = described.message_type
        if described.type in _INTEGERS:
            _check_integers(item, named)
            continue
        if item is None or kind is None or kind.full_name in _SPECIAL_JSON:
            continue
        if kind.GetOptions().map_entry:
            continue  # map values are checked by the library (scalars here)
        inner = named
        if described.is_repeated:
            for index, element in enumerate(item if isinstance(item, list) else ()):
                _check_shape(element, kind, f"{inner}[{index}]", names)
        else:
            _check_shape(item, kind, inner, names)


_INTEGERS = frozenset(
    {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED32,
        FieldDescriptor.TYPE_SFIXED64,
    }
)
_DECIMAL = re.compile(r"-?[0-9]+")


def _check_integers(item: Any, path: str) -> None:
    """An integer field given as a string holds ASCII decimal digits: the library reads it
    with ``int()``, which also takes other scripts' digits (``"٣"``) and ``_`` (``"1_2"``)."""
    for index, element in enumerate(item if isinstance(item, list) else [item]):
        if isinstance(element, str) and not _DECIMAL.fullmatch(element):
            where = f"{path}[{index}]" if isinstance(item, list) else path
            raise InvalidArgument(where, f"{element[:40]!r} is not a decimal integer")


def parse_dict(value: Any, message: M, *, field: str = "body", names: set[str] | None = None) -> M:
    """Like :func:`parse`, from an already decoded JSON value."""
    try:
        # First: ParseDict takes [] for {}.
        _check_shape(value, message.DESCRIPTOR, field, set() if names is None else names)
        json_format.ParseDict(value, message, ignore_unknown_fields=False)
    except (json_format.ParseError, ValueError, TypeError, RecursionError, OverflowError) as exc:
        # OverflowError: an integer literal too large for a double field (400 digits).
        raise InvalidArgument(_field_of(exc, field), _reason(exc)) from exc
    return message


_FAILED = re.compile(r"Failed to parse (\w+) field: ")
_UNKNOWN = re.compile(r'has no field named "([^"]+)" at "([^"]+)"')
_AT = re.compile(
    r" at ([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*|\[[0-9]+\])*"
    r"\.[A-Za-z_][A-Za-z0-9_]*(?:\[[0-9]+\])?)\.*$"
)


def _field_of(exc: BaseException, field: str) -> str:
    """The field a parse error is about, as sent (``filter.tagsAny``), from the library's
    message ("Failed to parse filter field: Failed to parse tagsAny field: ..."); ``field``
    when it names none."""
    text, names = str(exc), []
    while found := _FAILED.match(text):
        names.append(found.group(1))
        text = text[found.end() :]
    unknown = _UNKNOWN.search(text)
    if unknown is not None:
        at = [] if names else unknown.group(2).split(".")[1:]  # after the message's type
        names = [*names, *at, unknown.group(1)]
    elif (where := _AT.search(text)) is not None:  # "... at TrackRequest.events[0].weight."
        at = where.group(1).split(".", 1)[1]  # after the message's type
        if re.sub(r"\[[0-9]+\]", "", at).split(".")[: len(names)] == names:
            return at if field == "body" else f"{field}.{at}"
    if not names:
        return field
    path = ".".join(names)
    return path if field == "body" else f"{field}.{path}"


def to_dict(message: Message) -> dict[str, Any]:
    """The message as a JSON object (the proto3 mapping's default form)."""
    return json_format.MessageToDict(message)


def to_json(message: Message) -> bytes:
    """The message as compact UTF-8 JSON."""
    return json.dumps(to_dict(message), separators=(",", ":"), ensure_ascii=False).encode()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 500 else text[:497] + "..."


def as_sent(field: str, names: set[str]) -> str:
    """A field path named with the names the payload used: ``events[0].occurred_at`` for a
    payload that said ``occurredAt`` becomes ``events[0].occurredAt`` (the domain names
    fields by their proto names)."""
    parts = []
    for part in field.split("."):
        name, bracket, rest = part.partition("[")
        camel = re.sub(r"_([a-z0-9])", lambda m: m[1].upper(), name)
        if name not in names and camel in names:
            name = camel
        parts.append(name + bracket + rest)
    return ".".join(parts)
