"""Protobuf messages to and from JSON, as the proto3 JSON mapping defines it.

One place for the HTTP API (and anything else speaking protobuf-JSON) to read a request
body into a message, refusing what the mapping refuses with InvalidArgument, and to write a
message: lowerCamelCase names, default values left out, enums by name.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

from semantic.common.errors import InvalidArgument

M = TypeVar("M", bound=Message)


def parse(payload: bytes | str, message: M, *, field: str = "body") -> M:
    """Fill ``message`` from protobuf-JSON; InvalidArgument(``field``) when it cannot be.

    Unknown fields are refused (a typo must not be silently ignored); both the JSON names
    (``topK``) and the proto names (``top_k``) are accepted.
    """
    try:
        text = payload.decode("utf-8") if isinstance(payload, bytes) else payload
        json_format.Parse(text, message, ignore_unknown_fields=False)
    except UnicodeDecodeError as exc:
        raise InvalidArgument(field, f"not UTF-8: {exc.reason} at byte {exc.start}") from exc
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise InvalidArgument(field, _reason(exc)) from exc
    return message


def parse_dict(value: Any, message: M, *, field: str = "body") -> M:
    """Like :func:`parse`, from an already decoded JSON value."""
    try:
        json_format.ParseDict(value, message, ignore_unknown_fields=False)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise InvalidArgument(field, _reason(exc)) from exc
    return message


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
