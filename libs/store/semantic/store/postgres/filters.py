"""Compile a search `Filter` (and the tenant) into a parameterised WHERE fragment over nodes `n`.

The fragment reads only ``semantic.nodes`` aliased ``n``; every value travels as a positional
parameter, numbered from ``start`` (``$start``, ``$start+1`` ...), and no identifier is ever
built from input. Semantics, all conditions ANDed:

- ``content_types``: any of; ``tags_any``: ``n.tags && $x``; ``tags_all``: ``n.tags @> $x``;
  ``tags_none``: ``NOT n.tags && $x``; ``ids`` / ``exclude_ids``: include / exclude by id.
- ``created`` / ``updated``: ``[start, end)`` on ``n.created_at`` / ``n.updated_at``.
- metadata, on a dotted key naming nested object keys (``"a.b"`` is ``metadata->'a'->'b'``;
  a key that itself contains a dot cannot be addressed), exactly one test per condition:
  ``equals`` (JSON equality with a string, number or boolean; ``1`` equals ``1.0``; a stored
  array matches when it holds the value) and ``any_of`` (the same for several values,
  ``None`` meaning JSON null) are containment tests on ``metadata``; ``number_range``
  compares JSON numbers only; ``time_range`` compares RFC 3339 strings (a date alone, or a
  time without offset, is read as UTC) as ``[start, end)``; ``exists`` tests that the key is
  present (a JSON null counts).
  A stored value of another type, or a string that is not a valid RFC 3339 date, simply does
  not match: guards (``jsonb_typeof`` and a calendar-exact regular expression checked before
  any cast) make sure a bad stored value never errors a query.
- ``negate`` inverts a metadata condition; a node without the key then matches.

The filter is validated first (``semantic.core.filters.validate_filter``): a malformed one
raises ``InvalidArgument`` with its field path before any SQL is built.
"""

from __future__ import annotations

import json
from typing import Any

from semantic.core.domain import Filter, MetadataCondition, NumberRange, TimeRange
from semantic.core.filters import aware, check_string, key_path, validate_filter

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
    check_string("tenant", tenant)
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


# --- SQL -------------------------------------------------------------------------------------


def _column_range(column: str, bounds: TimeRange, p: _Params) -> list[str]:
    parts = []
    if bounds.start is not None:
        parts.append(f"{column} >= {p.add(aware(bounds.start))}")
    if bounds.end is not None:
        parts.append(f"{column} < {p.add(aware(bounds.end))}")
    return parts


def _metadata(condition: MetadataCondition, p: _Params) -> str:
    path = key_path(condition.key)
    if condition.equals is not None or condition.any_of is not None:
        # The stored value equals one of the values, or is an array holding one: jsonb
        # containment reaches into an array only when the probe is an array too.
        values = [condition.equals] if condition.equals is not None else condition.any_of or ()
        docs = [_nested_json(path, form) for value in values for form in (value, [value])]
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
        tests.append(f"{moment} >= {p.add(aware(bounds.start))}::timestamptz")
    if bounds.end is not None:
        tests.append(f"{moment} < {p.add(aware(bounds.end))}::timestamptz")
    return (
        f"CASE WHEN jsonb_typeof({value}) = 'string' AND {text} ~ {rfc3339}::text"
        f" THEN {' AND '.join(tests)} ELSE false END"
    )
