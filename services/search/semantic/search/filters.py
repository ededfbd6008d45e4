"""Compile a search `Filter` (and the tenant) into a parameterised WHERE fragment over nodes `n`.

The fragment reads only ``semantic.nodes`` aliased ``n``; every value travels as a positional
parameter, numbered from ``start`` (``$start``, ``$start+1`` ...), and no identifier is ever
built from input. Semantics, all conditions ANDed:

- ``content_types``: any of; ``tags_any``: ``n.tags && $x``; ``tags_all``: ``n.tags @> $x``;
  ``tags_none``: ``NOT n.tags && $x``; ``ids`` / ``exclude_ids``: include / exclude by id.
- ``created`` / ``updated``: ``[start, end)`` on ``n.created_at`` / ``n.updated_at``.
- metadata, on a dotted key naming nested object keys (``"a.b"`` is ``metadata->'a'->'b'``;
  a key that itself contains a dot cannot be addressed), exactly one test per condition:
  ``equals`` (JSON equality with a string, number or boolean; ``1`` equals ``1.0``) and
  ``any_of`` (the same for several values, ``None`` meaning JSON null) are containment tests
  that use the GIN index on ``metadata``; ``number_range`` compares JSON numbers only;
  ``time_range`` compares RFC 3339 strings (a date alone, or a time without offset, is read as
  UTC) as ``[start, end)``; ``exists`` tests that the key is present (a JSON null counts).
  A stored value of another type, or a string that is not a valid RFC 3339 date, simply does
  not match: guards (``jsonb_typeof`` and a calendar-exact regular expression checked before
  any cast) make sure a bad stored value never errors a query.
- ``negate`` inverts a metadata condition; a node without the key then matches.

A malformed filter raises ``InvalidArgument`` with a field path such as
``filter.metadata[2].number_range``; list sizes are bounded by the module constants below.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from semantic.common import validation
from semantic.common.errors import InvalidArgument
from semantic.search.domain import Filter, MetadataCondition, NumberRange, TimeRange

MAX_VALUES = 1024
"""Most values in one list (content types, each tag list, one condition's any_of)."""
MAX_IDS = 10_240
"""Most ids in ``ids`` or ``exclude_ids`` (Nearest adds the source node to the latter)."""
MAX_METADATA_CONDITIONS = 32
MAX_KEY_DEPTH = 8
MAX_KEY_LENGTH = 256
MAX_STRING_LENGTH = 4096
"""Longest string value (tag, id, content type, metadata value) a filter may carry."""

# Calendar-exact RFC 3339 (leap years included; a date alone or a time without offset are
# accepted, year 0000 and offsets beyond PostgreSQL's +-15:59 are not): a string that passes
# always casts to timestamptz, so the cast can never raise on a stored value.
RFC3339_PATTERN = (
    r"^(?!0000)(?:\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|02-(?:0[1-9]|1\d|2[0-8]))"
    r"|(?:\d{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)"
    r"(?:[Tt ](?:[01]\d|2[0-3]):[0-5]\d(?::(?:[0-5]\d|60)(?:\.\d{1,9})?)?"
    r"(?:[Zz]|[+-](?:0\d|1[0-5]):?[0-5]\d)?)?$"
)
OFFSET_PATTERN = r"(?:[Zz]|[+-]\d\d:?\d\d)$"

_Scalar = str | bool | int | float


class _Params:
    """Positional parameters collected while compiling, numbered from ``start``."""

    def __init__(self, start: int) -> None:
        self.start = start
        self.values: list[Any] = []
        self._shared: dict[str, str] = {}

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${self.start + len(self.values) - 1}"

    def shared(self, name: str, value: Any) -> str:
        """One parameter reused by every condition that needs the same constant."""
        if name not in self._shared:
            self._shared[name] = self.add(value)
        return self._shared[name]


def compile_filter(tenant: str, flt: Filter, *, start: int = 1) -> tuple[str, list[Any]]:
    """``(sql, params)``: a WHERE fragment over ``semantic.nodes n``, parameters from ``$start``.

    The tenant condition always comes first, so the fragment is never empty.
    """
    if start < 1:
        raise ValueError("parameter numbering starts at 1")
    validate_filter(flt)
    _check_string("tenant", tenant)
    p = _Params(start)
    parts = [f"n.tenant = {p.add(tenant)}"]
    if flt.content_types:
        parts.append(f"n.content_type = ANY({p.add(list(flt.content_types))}::text[])")
    if flt.tags_any:
        parts.append(f"n.tags && {p.add(list(flt.tags_any))}::text[]")
    if flt.tags_all:
        parts.append(f"n.tags @> {p.add(list(flt.tags_all))}::text[]")
    if flt.tags_none:
        parts.append(f"NOT (n.tags && {p.add(list(flt.tags_none))}::text[])")
    if flt.ids:
        parts.append(f"n.id = ANY({p.add(list(flt.ids))}::text[])")
    if flt.exclude_ids:
        parts.append(f"n.id <> ALL({p.add(list(flt.exclude_ids))}::text[])")
    if flt.created is not None:
        parts.extend(_column_range("n.created_at", flt.created, p))
    if flt.updated is not None:
        parts.extend(_column_range("n.updated_at", flt.updated, p))
    for condition in flt.metadata:
        parts.append(_metadata(condition, p))
    return " AND ".join(parts), p.values


def validate_filter(flt: Filter) -> None:
    """Raise ``InvalidArgument`` for the first problem found in ``flt``."""
    lists: Sequence[tuple[str, tuple[str, ...], int]] = (
        ("content_types", flt.content_types, MAX_VALUES),
        ("tags_any", flt.tags_any, MAX_VALUES),
        ("tags_all", flt.tags_all, MAX_VALUES),
        ("tags_none", flt.tags_none, MAX_VALUES),
        ("ids", flt.ids, MAX_IDS),
        ("exclude_ids", flt.exclude_ids, MAX_IDS),
    )
    for name, values, most in lists:
        _check_strings(f"filter.{name}", values, most)
    if flt.created is not None:
        _check_time_range("filter.created", flt.created)
    if flt.updated is not None:
        _check_time_range("filter.updated", flt.updated)
    if len(flt.metadata) > MAX_METADATA_CONDITIONS:
        raise InvalidArgument(
            "filter.metadata", f"at most {MAX_METADATA_CONDITIONS} conditions are allowed"
        )
    for index, condition in enumerate(flt.metadata):
        _check_condition(f"filter.metadata[{index}]", condition)


def key_path(key: str) -> list[str]:
    """The object keys a dotted metadata key names: ``"a.b"`` -> ``["a", "b"]``."""
    return key.split(".")


# --- SQL -------------------------------------------------------------------------------------


def _column_range(column: str, bounds: TimeRange, p: _Params) -> list[str]:
    parts = []
    if bounds.start is not None:
        parts.append(f"{column} >= {p.add(_aware(bounds.start))}")
    if bounds.end is not None:
        parts.append(f"{column} < {p.add(_aware(bounds.end))}")
    return parts


def _metadata(condition: MetadataCondition, p: _Params) -> str:
    path = key_path(condition.key)
    if condition.equals is not None:
        sql = f"n.metadata @> {p.add(_nested_json(path, condition.equals))}::text::jsonb"
    elif condition.any_of is not None:
        docs = [_nested_json(path, value) for value in condition.any_of]
        sql = f"n.metadata @> ANY({p.add(docs)}::text[]::jsonb[])"
    else:
        value = f"(n.metadata #> {p.add(path)}::text[])"
        if condition.number_range is not None:
            sql = _number_test(value, condition.number_range, p)
        elif condition.time_range is not None:
            sql = _time_test(value, condition.time_range, p)
        else:
            sql = f"{value} IS {'NOT ' if condition.exists else ''}NULL"
    # Every test above is true or false, never NULL, so NOT keeps nodes without the key.
    return f"NOT ({sql})" if condition.negate else f"({sql})"


def _nested_json(path: list[str], value: Any) -> str:
    doc: Any = value
    for segment in reversed(path):
        doc = {segment: doc}
    return json.dumps(doc, allow_nan=False, ensure_ascii=False)


def _number_test(value: str, bounds: NumberRange, p: _Params) -> str:
    number = f"{value}::numeric"
    tests = []
    for bound, op in ((bounds.gte, ">="), (bounds.gt, ">"), (bounds.lte, "<="), (bounds.lt, "<")):
        if bound is not None:
            tests.append(f"{number} {op} {p.add(float(bound))}::float8::numeric")
    return f"CASE WHEN jsonb_typeof({value}) = 'number' THEN {' AND '.join(tests)} ELSE false END"


def _time_test(value: str, bounds: TimeRange, p: _Params) -> str:
    text = f"({value} #>> '{{}}')"
    rfc3339 = p.shared("rfc3339", RFC3339_PATTERN)
    offset = p.shared("offset", OFFSET_PATTERN)
    moment = (
        f"(CASE WHEN {text} ~ {offset}::text THEN {text}::timestamptz"
        f" ELSE {text}::timestamp AT TIME ZONE 'UTC' END)"
    )
    tests = []
    if bounds.start is not None:
        tests.append(f"{moment} >= {p.add(_aware(bounds.start))}::timestamptz")
    if bounds.end is not None:
        tests.append(f"{moment} < {p.add(_aware(bounds.end))}::timestamptz")
    return (
        f"CASE WHEN jsonb_typeof({value}) = 'string' AND {text} ~ {rfc3339}::text"
        f" THEN {' AND '.join(tests)} ELSE false END"
    )


# --- validation ------------------------------------------------------------------------------


def _check_condition(field: str, condition: MetadataCondition) -> None:
    _check_key(f"{field}.key", condition.key)
    tests = {
        "equals": condition.equals is not None,
        "any_of": condition.any_of is not None,
        "number_range": condition.number_range is not None,
        "time_range": condition.time_range is not None,
        "exists": condition.exists is not None,
    }
    chosen = [name for name, present in tests.items() if present]
    if len(chosen) != 1:
        raise InvalidArgument(
            field,
            "set exactly one of equals, any_of, number_range, time_range, exists"
            + (f" (got {', '.join(chosen)})" if chosen else ""),
        )
    if condition.equals is not None:
        _check_scalar(f"{field}.equals", condition.equals, allow_null=False)
    elif condition.any_of is not None:
        if not condition.any_of:
            raise InvalidArgument(f"{field}.any_of", "must hold at least one value")
        if len(condition.any_of) > MAX_VALUES:
            raise InvalidArgument(f"{field}.any_of", f"at most {MAX_VALUES} values are allowed")
        for i, value in enumerate(condition.any_of):
            _check_scalar(f"{field}.any_of[{i}]", value, allow_null=True)
    elif condition.number_range is not None:
        _check_number_range(f"{field}.number_range", condition.number_range)
    elif condition.time_range is not None:
        _check_time_range(f"{field}.time_range", condition.time_range)


def _check_key(field: str, key: str) -> None:
    if not isinstance(key, str) or not key:
        raise InvalidArgument(field, "must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidArgument(field, f"longer than {MAX_KEY_LENGTH} characters")
    path = key_path(key)
    if any(not segment for segment in path):
        raise InvalidArgument(field, f"{key!r} has an empty segment between dots")
    if len(path) > MAX_KEY_DEPTH:
        raise InvalidArgument(field, f"nested deeper than {MAX_KEY_DEPTH} levels")
    _check_string(field, key)


def _check_scalar(field: str, value: Any, *, allow_null: bool) -> None:
    if value is None and allow_null:
        return
    if isinstance(value, str):
        _check_string(field, value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArgument(field, "must be a finite number")
    elif not isinstance(value, _Scalar):
        raise InvalidArgument(field, "must be a string, number or boolean")


def _check_number_range(field: str, bounds: NumberRange) -> None:
    values = (bounds.gte, bounds.gt, bounds.lte, bounds.lt)
    if all(v is None for v in values):
        raise InvalidArgument(field, "set at least one of gte, gt, lte, lt")
    if bounds.gt is not None and bounds.gte is not None:
        raise InvalidArgument(field, "set gt or gte, not both")
    if bounds.lt is not None and bounds.lte is not None:
        raise InvalidArgument(field, "set lt or lte, not both")
    for v in values:
        if v is not None and (isinstance(v, bool) or not math.isfinite(v)):
            raise InvalidArgument(field, "bounds must be finite numbers")
    low = bounds.gte if bounds.gte is not None else bounds.gt
    high = bounds.lte if bounds.lte is not None else bounds.lt
    if low is not None and high is not None:
        inclusive = bounds.gte is not None and bounds.lte is not None
        if low > high or (low == high and not inclusive):
            raise InvalidArgument(field, "the range is empty (lower bound above upper bound)")


def _check_time_range(field: str, bounds: TimeRange) -> None:
    if bounds.start is None and bounds.end is None:
        raise InvalidArgument(field, "set start, end or both")
    for value in (bounds.start, bounds.end):
        if value is not None and not isinstance(value, datetime):
            raise InvalidArgument(field, "bounds must be timestamps")
    start, end = bounds.start, bounds.end
    if start is not None and end is not None and _aware(start) >= _aware(end):
        raise InvalidArgument(field, "start must be before end")


def _check_strings(field: str, values: tuple[str, ...], most: int) -> None:
    if len(values) > most:
        raise InvalidArgument(field, f"at most {most} values are allowed")
    for i, value in enumerate(values):
        _check_string(f"{field}[{i}]", value)


def _check_string(field: str, value: str) -> None:
    if not isinstance(value, str):
        raise InvalidArgument(field, "must be a string")
    validation.text(value, field, MAX_STRING_LENGTH)


def _aware(moment: datetime) -> datetime:
    """A timestamp with a zone; a naive one is read as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
