"""The search filter's rules: what a `Filter` may hold, checked before any store sees it.

A filter restricts which nodes a query may return (all conditions ANDed): content types,
tags (any / all / none), ids to include or exclude, created / updated time ranges, and
metadata conditions on dotted keys naming nested object keys (``"a.b"``). Each metadata
condition carries exactly one test: ``equals``, ``any_of``, ``number_range``,
``time_range`` or ``exists``; ``negate`` inverts it. A malformed filter raises
``InvalidArgument`` with a field path such as ``filter.metadata[2].number_range``; list
sizes are bounded by the module constants below. A store compiles a valid filter into its
own query language (PostgreSQL: ``semantic.store.postgres.filters``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from semantic.common import validation
from semantic.common.errors import InvalidArgument
from semantic.core.domain import Filter, MetadataCondition, NumberRange, TimeRange

MAX_VALUES = 1024
"""Most values in one list (content types, each tag list, one condition's any_of)."""
MAX_IDS = 10_240
"""Most ids in ``ids`` or ``exclude_ids`` (Nearest adds the source node to the latter)."""
MAX_METADATA_CONDITIONS = 32
MAX_KEY_DEPTH = 8
MAX_KEY_LENGTH = 256
MAX_STRING_LENGTH = 4096
"""Longest string value (tag, id, content type, metadata value) a filter may carry."""

_Scalar = str | bool | int | float


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
    check_string(field, key)


def _check_scalar(field: str, value: Any, *, allow_null: bool) -> None:
    if value is None and allow_null:
        return
    if isinstance(value, str):
        check_string(field, value)
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
    if start is not None and end is not None and aware(start) >= aware(end):
        raise InvalidArgument(field, "start must be before end")


def _check_strings(field: str, values: tuple[str, ...], most: int) -> None:
    if len(values) > most:
        raise InvalidArgument(field, f"at most {most} values are allowed")
    for i, value in enumerate(values):
        check_string(f"{field}[{i}]", value)


def check_string(field: str, value: str) -> None:
    """A string value of a filter (or the tenant it is compiled for)."""
    if not isinstance(value, str):
        raise InvalidArgument(field, "must be a string")
    validation.text(value, field, MAX_STRING_LENGTH)


def aware(moment: datetime) -> datetime:
    """A timestamp with a zone; a naive one is read as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
