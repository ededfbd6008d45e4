"""JSON values from protobuf ``Struct`` and ``Value`` messages, checked in the same pass
(finite numbers, strings and keys without NUL, bounded nesting); a problem names the path it
was found at, e.g. ``nodes[0].metadata.a.b``."""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2

from semantic.common import validation


def struct_to_dict(struct: struct_pb2.Struct, field: str, depth: int = 1) -> dict[str, Any]:
    """A Struct as a JSON object, checked in the same pass (finite numbers, no NUL,
    non-empty keys, bounded nesting); problems name the path, e.g. ``metadata.a.b``."""
    validation.json_depth(depth, field)
    out: dict[str, Any] = {}
    for key, value in struct.fields.items():
        validation.json_key(key, field)
        out[key] = value_to_python(value, f"{field}.{key}", depth)
    return out


def value_to_python(value: struct_pb2.Value, field: str, depth: int = 0) -> Any:
    """A Value as a JSON value (None for null or unset), checked like ``struct_to_dict``."""
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return validation.json_string(value.string_value, field)
    if kind == "number_value":
        return validation.json_number(value.number_value, field)
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return struct_to_dict(value.struct_value, field, depth + 1)
    if kind == "list_value":
        validation.json_depth(depth + 1, field)
        return [
            value_to_python(item, f"{field}[{i}]", depth + 1)
            for i, item in enumerate(value.list_value.values)
        ]
    return None
