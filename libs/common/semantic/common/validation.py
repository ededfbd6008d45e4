"""Input rules at the edge: each field a client or a publisher sends, checked once.

Plain functions over Python values (no protobuf, no gRPC). Each returns the value it
accepts and raises ``InvalidArgument(field, problem)`` naming the field path it was
given, for example ``nodes[3].metadata.price: must be a finite number``. The rules
follow the contracts in ``protos/semantic/v1`` (formats and documented limits) and the
PostgreSQL column types the values end up in:

    what                                  rule
    tenant                                "" (the default tenant) or
                                          [A-Za-z0-9][A-Za-z0-9_-]{0,63}
    node id                               1-256 characters, not blank, no control characters
    slug                                  1-512 characters, no whitespace, no control characters
    content type, vector name, archetype  [a-z][a-z0-9_]{0,63}
    event id, session id, source          at most 128 characters, no control characters
    user id                               at most 256 characters, no control characters
    tag                                   1-128 characters, no NUL
    text (title, body, texts, query ...)  no NUL, at most the limit of its field
    bigint / integer column               0 <= n <= 2^63 - 1 / 2^31 - 1
    space id                              ASCII digits only, 1 <= n <= 2^31 - 1
    timestamp                             years 1 to 9999 (UTC) but their first and last
                                          microsecond, nanos in [0, 10^9)
    float                                 finite (NaN and infinity rejected), within bounds
    JSON (metadata, context, filter       numbers finite; strings without NUL; object keys
      values)                             1-256 characters without NUL; nesting <= 32 levels
    batch                                 the same key at most once (see ``repeated``)

"Control characters" are Unicode category Cc (U+0000-U+001F, U+007F-U+009F). NUL is
refused in every string bound for PostgreSQL (``text`` and ``jsonb`` cannot hold it).
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from semantic.common.errors import InvalidArgument

BIGINT_MAX = 2**63 - 1
"""Largest value of a PostgreSQL ``bigint`` (node versions, counters)."""
INT32_MAX = 2**31 - 1
"""Largest value of a PostgreSQL ``integer`` (space ids, chunk numbers, spans)."""

MAX_ID_CHARS = 256
MAX_SLUG_CHARS = 512
MAX_NAME_CHARS = 64
MAX_TAG_CHARS = 128
MAX_SHORT_ID_CHARS = 128
MAX_USER_ID_CHARS = 256
MAX_JSON_DEPTH = 32
MAX_JSON_KEY_CHARS = 256

TENANT_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
NAME_PATTERN = r"[a-z][a-z0-9_]{0,63}"

# Seconds since the epoch of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799
NANOS_PER_SECOND = 1_000_000_000

_TENANT = re.compile(TENANT_PATTERN)
_NAME = re.compile(NAME_PATTERN)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
_DIGITS = re.compile(r"[0-9]{1,10}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def tenant(value: str, field: str) -> str:
    """A tenant name: empty (the default tenant) or ``[A-Za-z0-9][A-Za-z0-9_-]{0,63}``."""
    if value and not _TENANT.fullmatch(value):
        raise InvalidArgument(
            field, f"{_shown(value)} is not a tenant name (must match {TENANT_PATTERN})"
        )
    return value


def node_id(value: str, field: str) -> str:
    """A node id: 1-256 characters, not blank, no control characters."""
    return _identifier(value, field, MAX_ID_CHARS)


def slug(value: str, field: str) -> str:
    """A slug: 1-512 characters without whitespace or control characters."""
    if not value:
        raise InvalidArgument(field, "must not be empty")
    if len(value) > MAX_SLUG_CHARS:
        raise InvalidArgument(field, f"is longer than {MAX_SLUG_CHARS} characters")
    if _SPACE_OR_CONTROL.search(value):
        raise InvalidArgument(field, "must not contain whitespace or control characters")
    return value


def name(value: str, field: str) -> str:
    """A content type, vector name or archetype: ``[a-z][a-z0-9_]{0,63}``."""
    if not value:
        raise InvalidArgument(field, "must not be empty")
    if not _NAME.fullmatch(value):
        raise InvalidArgument(field, f"{_shown(value)} must match {NAME_PATTERN}")
    return value


def short_id(value: str, field: str, *, required: bool = False) -> str:
    """An event id, session id or source name: at most 128 characters, no control
    characters; ``required`` ones must not be blank."""
    if not value:
        if required:
            raise InvalidArgument(field, "must not be empty")
        return value
    return _identifier(value, field, MAX_SHORT_ID_CHARS)


def user_id(value: str, field: str, *, required: bool = False) -> str:
    """A user id: at most 256 characters, no control characters; ``required`` ones must
    not be blank."""
    if not value:
        if required:
            raise InvalidArgument(field, "must not be empty")
        return value
    return _identifier(value, field, MAX_USER_ID_CHARS)


def tag(value: str, field: str) -> str:
    """A tag: 1-128 characters, no NUL."""
    if not value:
        raise InvalidArgument(field, "must not be empty")
    return text(value, field, MAX_TAG_CHARS)


def text(value: str, field: str, max_chars: int) -> str:
    """Free text bound for PostgreSQL: no NUL, at most ``max_chars`` characters."""
    if len(value) > max_chars:
        raise InvalidArgument(field, f"is longer than {max_chars} characters")
    if "\x00" in value:
        raise InvalidArgument(field, "must not contain NUL characters")
    return value


def integer(value: int, field: str, *, minimum: int = 0, maximum: int = BIGINT_MAX) -> int:
    """An integer within ``[minimum, maximum]`` (by default a non-negative ``bigint``)."""
    if isinstance(value, bool) or not minimum <= value <= maximum:
        raise InvalidArgument(field, f"must be between {minimum} and {maximum}")
    return value


def number(
    value: float,
    field: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float:
    """A finite float within the optional inclusive bounds."""
    if isinstance(value, bool) or not math.isfinite(value):
        raise InvalidArgument(field, "must be a finite number")
    if minimum is not None and value < minimum:
        raise InvalidArgument(field, f"must be >= {minimum:g}")
    if maximum is not None and value > maximum:
        raise InvalidArgument(field, f"must be <= {maximum:g}")
    return float(value)


def space_id(value: str, field: str = "space_id") -> int | None:
    """``""`` -> None (the active space); ASCII digits -> that space (1 to 2^31 - 1)."""
    if not value:
        return None
    if not _DIGITS.fullmatch(value):
        raise InvalidArgument(field, f"{_shown(value)} is not a space id (ASCII digits, e.g. 3)")
    number_ = int(value)
    if not 1 <= number_ <= INT32_MAX:
        raise InvalidArgument(field, f"must be between 1 and {INT32_MAX}")
    return number_


def timestamp(seconds: int, nanos: int, field: str) -> datetime:
    """A protobuf Timestamp's parts as an aware UTC datetime (microseconds, truncated)."""
    if not MIN_TIMESTAMP_SECONDS <= seconds <= MAX_TIMESTAMP_SECONDS:
        raise InvalidArgument(field, "must be between the years 1 and 9999")
    if not 0 <= nanos < NANOS_PER_SECOND:
        raise InvalidArgument(f"{field}.nanos", f"must be in [0, {NANOS_PER_SECOND})")
    at = _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)
    if at in _INFINITE:
        raise InvalidArgument(
            field, "must be after 0001-01-01T00:00:00Z and before 9999-12-31T23:59:59.999999Z"
        )
    return at


_INFINITE = (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))
"""The first and last instants of the range, which the database driver stores as -infinity
and infinity (and reads back without a time zone)."""


def json_key(key: str, field: str) -> str:
    """An object key of a JSON value: 1-256 characters, no NUL."""
    if not key:
        raise InvalidArgument(field, "object keys must not be empty")
    if len(key) > MAX_JSON_KEY_CHARS:
        raise InvalidArgument(field, f"object key longer than {MAX_JSON_KEY_CHARS} characters")
    if "\x00" in key:
        raise InvalidArgument(field, "object keys must not contain NUL characters")
    return key


def json_string(value: str, field: str) -> str:
    """A string inside a JSON value: no NUL (its size is bounded by the whole value's)."""
    if "\x00" in value:
        raise InvalidArgument(field, "must not contain NUL characters")
    return value


def json_number(value: float, field: str) -> float:
    """A number inside a JSON value: finite."""
    if not math.isfinite(value):
        raise InvalidArgument(field, "must be a finite number")
    return value


def json_depth(depth: int, field: str) -> None:
    """Nesting of objects and lists inside a JSON value: at most 32 levels."""
    if depth > MAX_JSON_DEPTH:
        raise InvalidArgument(field, f"is nested deeper than {MAX_JSON_DEPTH} levels")


def count(size: int, field: str, maximum: int, *, minimum: int = 0) -> None:
    """A repeated field holds between ``minimum`` and ``maximum`` entries."""
    if size < minimum:
        what = "entry" if minimum == 1 else "entries"
        raise InvalidArgument(field, f"must hold at least {minimum} {what}")
    if size > maximum:
        raise InvalidArgument(field, f"holds {size} entries, at most {maximum} are allowed")


def repeated(keys: Iterable[Hashable]) -> tuple[int, int] | None:
    """``(first, again)``: positions of the first key seen twice, or None when all differ."""
    seen: dict[Hashable, int] = {}
    for index, key in enumerate(keys):
        first = seen.setdefault(key, index)
        if first != index:
            return first, index
    return None


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object (``json.loads``'s ``object_pairs_hook``) whose keys are distinct: a
    key given twice raises ValueError (which of its values would count is unclear)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} is given twice")
        out[key] = value
    return out


def _identifier(value: str, field: str, max_chars: int) -> str:
    if not value.strip():
        raise InvalidArgument(field, "must not be empty")
    if len(value) > max_chars:
        raise InvalidArgument(field, f"is longer than {max_chars} characters")
    if _CONTROL.search(value):
        raise InvalidArgument(field, "must not contain control characters")
    return value


def _shown(value: str) -> str:
    """A value for an error message: quoted, control characters escaped, cut at 64."""
    return repr(value[:64]) + ("..." if len(value) > 64 else "")
