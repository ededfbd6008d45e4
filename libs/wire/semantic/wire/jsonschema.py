"""JSON Schemas of protobuf messages as the proto3 JSON mapping writes and reads them.

The HTTP API speaks protobuf-JSON (``google.protobuf.json_format``): field names in
lowerCamelCase, 64-bit integers as strings, enums by name, ``Timestamp`` as RFC 3339,
``Struct`` as any object, wrappers as their value, default values left out. These schemas
say exactly that, so the OpenAPI document describes what the server sends and accepts:

    schemas = SchemaSet(comments)        # comments: proto full name -> its leading comment
    ref = schemas.ref(pb.SearchRequest.DESCRIPTOR)   # {"$ref": "#/components/schemas/..."}
    schemas.components                   # every message reached, by component name

A component is named by the message's name inside its package (``SearchRequest``,
``Node``, ``Filter``). Well-known types are inlined. Every object is closed
(``additionalProperties: false``): a field the server does not know is refused, and a
response carrying a field the document does not list is a document to regenerate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

Schema = dict[str, Any]
_REF = "#/components/schemas/"
_INT64 = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}
_UNSIGNED = {FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32}
_SIGNED32 = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SFIXED32,
}


def _int64(unsigned: bool) -> Schema:
    """Written as a decimal string; read as a string or a JSON integer."""
    pattern = "^[0-9]+$" if unsigned else "^-?[0-9]+$"
    return {"type": ["string", "integer"], "pattern": pattern, "format": "int64"}


_VALUE: Schema = {"description": "Any JSON value."}
_WELL_KNOWN: Mapping[str, Schema] = {
    "google.protobuf.Timestamp": {
        "type": "string",
        "format": "date-time",
        "description": "RFC 3339 time in UTC, e.g. 2026-01-31T12:00:00Z (years 1-9999).",
    },
    "google.protobuf.Duration": {
        "type": "string",
        "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$",
        "description": "Seconds with an `s` suffix, e.g. 1.5s.",
    },
    "google.protobuf.Struct": {"type": "object", "additionalProperties": _VALUE},
    "google.protobuf.Value": _VALUE,
    "google.protobuf.ListValue": {"type": "array", "items": _VALUE},
    "google.protobuf.Empty": {"type": "object", "additionalProperties": False},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.DoubleValue": {"type": "number"},
    "google.protobuf.FloatValue": {"type": "number"},
    "google.protobuf.Int64Value": _int64(unsigned=False),
    "google.protobuf.UInt64Value": _int64(unsigned=True),
    "google.protobuf.Int32Value": {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
    "google.protobuf.UInt32Value": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.StringValue": {"type": "string"},
    "google.protobuf.BytesValue": {"type": "string", "format": "byte"},
}


def component_name(descriptor: Descriptor) -> str:
    """``semantic.v1.SearchRequest`` -> ``SearchRequest``; nested: ``Outer.Inner``."""
    package = descriptor.file.package
    full = descriptor.full_name
    return full[len(package) + 1 :] if package and full.startswith(package + ".") else full


class SchemaSet:
    """The component schemas of every message reached from the ones asked for."""

    def __init__(self, comments: Mapping[str, str] | None = None) -> None:
        """``comments``: leading comments by full name (``pkg.Msg``, ``pkg.Msg.field``,
        ``pkg.Enum``), used as descriptions; none when the source is not at hand."""
        self._comments = comments or {}
        self.components: dict[str, Schema] = {}

    def ref(self, descriptor: Any) -> Schema:
        """A reference to the message's component (built on first use); ``descriptor`` is a
        message's ``DESCRIPTOR`` (pure-Python or upb)."""
        inline = _WELL_KNOWN.get(descriptor.full_name)
        if inline is not None:
            return dict(inline)
        name = component_name(descriptor)
        if name not in self.components:
            self.components[name] = {}  # reserved first: messages may refer to themselves
            self.components[name] = self._message(descriptor)
        return {"$ref": _REF + name}

    def _message(self, descriptor: Descriptor) -> Schema:
        properties: dict[str, Schema] = {}
        for field in descriptor.fields:
            schema = self._field(field)
            comment = self._comments.get(field.full_name)
            if comment:
                schema = _described(schema, comment)
            properties[field.json_name] = schema
        out: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
        comment = self._comments.get(descriptor.full_name)
        if comment:
            out["description"] = comment
        return out

    def _field(self, field: FieldDescriptor) -> Schema:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value = field.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self._single(value)}
        single = self._single(field)
        if field.is_repeated:
            return {"type": "array", "items": single}
        return single

    def _single(self, field: FieldDescriptor) -> Schema:
        kind = field.type
        if kind in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_GROUP):
            assert field.message_type is not None
            return self.ref(field.message_type)
        if kind == FieldDescriptor.TYPE_ENUM:
            assert field.enum_type is not None
            return self._enum(field.enum_type)
        if kind in _INT64:
            return _int64(
                unsigned=kind in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64)
            )
        if kind in _UNSIGNED:
            return {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}
        if kind in _SIGNED32:
            return {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
        if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return {"type": "number"}
        if kind == FieldDescriptor.TYPE_BOOL:
            return {"type": "boolean"}
        if kind == FieldDescriptor.TYPE_BYTES:
            return {"type": "string", "format": "byte"}
        return {"type": "string"}

    def _enum(self, descriptor: EnumDescriptor) -> Schema:
        """Written by name; read by name or number."""
        names = [value.name for value in descriptor.values]
        numbers = [value.number for value in descriptor.values]
        out: Schema = {"enum": [*names, *numbers]}
        comment = self._comments.get(descriptor.full_name)
        if comment:
            out["description"] = comment
        return out


def _described(schema: Schema, text: str) -> Schema:
    return {**schema, "description": text}  # beside a $ref too: OpenAPI 3.1 allows it
