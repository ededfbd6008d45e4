"""Filter compilation: parameter numbering, values kept out of the SQL text, validation errors."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from semantic.common.errors import InvalidArgument
from semantic.core.domain import Filter, MetadataCondition, NumberRange, TimeRange
from semantic.core.filters import (
    MAX_KEY_DEPTH,
    MAX_METADATA_CONDITIONS,
    MAX_VALUES,
    validate_filter,
)
from semantic.store.postgres.filters import compile_filter

_T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _placeholders(sql: str) -> set[int]:
    return {int(n) for n in re.findall(r"\$(\d+)", sql)}


def test_an_empty_filter_is_the_tenant_alone() -> None:
    assert compile_filter("acme", Filter()) == ("n.tenant = $1", ["acme"])


def test_parameters_are_numbered_from_start_without_gaps() -> None:
    flt = Filter(
        content_types=("faq",),
        tags_any=("a",),
        tags_all=("b",),
        tags_none=("c",),
        ids=("x",),
        exclude_ids=("y",),
        created=TimeRange(start=_T0, end=_T0 + timedelta(days=1)),
        updated=TimeRange(start=_T0),
        metadata=(
            MetadataCondition("price", number_range=NumberRange(gte=1, lt=2)),
            MetadataCondition("when", time_range=TimeRange(start=_T0)),
            MetadataCondition("until", time_range=TimeRange(end=_T0)),
            MetadataCondition("color", any_of=("red", None)),
        ),
    )
    sql, params = compile_filter("t", flt, start=4)
    assert _placeholders(sql) == set(range(4, 4 + len(params)))
    assert params[0] == "t"
    # The two RFC 3339 patterns are shared by both time conditions.
    assert sum(isinstance(p, str) and p.startswith("^(?!0000)") for p in params) == 1


def test_values_and_keys_never_reach_the_sql_text() -> None:
    evil = "x'); DROP TABLE nodes; --"
    flt = Filter(
        content_types=(evil,),
        tags_any=(evil,),
        metadata=(
            MetadataCondition(f"a.{evil}", equals=evil),
            MetadataCondition(evil, number_range=NumberRange(gt=1)),
            MetadataCondition(evil, exists=True, negate=True),
        ),
    )
    sql, params = compile_filter(evil, flt)
    assert "DROP" not in sql
    assert evil in params
    assert ["a", evil] not in params  # equals is a containment document, not a path
    assert [json.loads(d) for d in params[3]] == [{"a": {evil: evil}}, {"a": {evil: [evil]}}]
    assert [evil] in params


def test_metadata_equality_is_a_containment_document() -> None:
    """The value itself, or an array holding it (jsonb containment reaches into a stored
    array only with an array probe)."""
    sql, params = compile_filter("", Filter(metadata=(MetadataCondition("a.b.c", equals=1.5),)))
    assert "n.metadata @> ANY($2::text[]::jsonb[])" in sql
    assert [json.loads(d) for d in params[1]] == [
        {"a": {"b": {"c": 1.5}}},
        {"a": {"b": {"c": [1.5]}}},
    ]


def test_negation_wraps_a_condition_that_is_never_null() -> None:
    cond = MetadataCondition("p", number_range=NumberRange(lte=3), negate=True)
    sql, _ = compile_filter("", Filter(metadata=(cond,)))
    assert sql.split(" AND ", 1)[1].startswith("NOT (CASE WHEN jsonb_typeof")
    assert "ELSE false END" in sql


def test_naive_timestamps_are_read_as_utc() -> None:
    naive = datetime(2024, 5, 1, 12, 0)
    _, params = compile_filter("", Filter(created=TimeRange(start=naive)))
    assert params[1] == naive.replace(tzinfo=UTC)


def test_start_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="starts at 1"):
        compile_filter("", Filter(), start=0)


def _cond(**kwargs: object) -> Filter:
    return Filter(
        metadata=(
            MetadataCondition("ok", exists=True),
            MetadataCondition("ok", exists=True),
            MetadataCondition(**kwargs),  # type: ignore[arg-type]
        )
    )


@pytest.mark.parametrize(
    ("flt", "field", "problem"),
    [
        (_cond(key="", exists=True), "filter.metadata[2].key", "empty"),
        (_cond(key="a..b", exists=True), "filter.metadata[2].key", "empty segment"),
        (
            _cond(key=".".join("k" * (MAX_KEY_DEPTH + 1)), exists=True),
            "filter.metadata[2].key",
            "deeper",
        ),
        (_cond(key="a"), "filter.metadata[2]", "exactly one"),
        (_cond(key="a", equals=1, exists=True), "filter.metadata[2]", "exactly one"),
        (_cond(key="a", equals=[1]), "filter.metadata[2].equals", "string, number or boolean"),
        (_cond(key="a", equals=float("nan")), "filter.metadata[2].equals", "finite"),
        (_cond(key="a", any_of=()), "filter.metadata[2].any_of", "at least one"),
        (_cond(key="a", any_of=("x", {"y": 1})), "filter.metadata[2].any_of[1]", "string"),
        (
            _cond(key="a", any_of=tuple(range(MAX_VALUES + 1))),
            "filter.metadata[2].any_of",
            "at most",
        ),
        (
            _cond(key="a", number_range=NumberRange()),
            "filter.metadata[2].number_range",
            "at least one",
        ),
        (
            _cond(key="a", number_range=NumberRange(gt=1, gte=1)),
            "filter.metadata[2].number_range",
            "not both",
        ),
        (
            _cond(key="a", number_range=NumberRange(lt=1, lte=1)),
            "filter.metadata[2].number_range",
            "not both",
        ),
        (
            _cond(key="a", number_range=NumberRange(gte=5, lte=4)),
            "filter.metadata[2].number_range",
            "empty",
        ),
        (
            _cond(key="a", number_range=NumberRange(gt=5, lt=5)),
            "filter.metadata[2].number_range",
            "empty",
        ),
        (
            _cond(key="a", number_range=NumberRange(lt=float("inf"))),
            "filter.metadata[2].number_range",
            "finite",
        ),
        (_cond(key="a", time_range=TimeRange()), "filter.metadata[2].time_range", "start, end"),
        (
            _cond(key="a", time_range=TimeRange(start=_T0, end=_T0)),
            "filter.metadata[2].time_range",
            "before end",
        ),
        (
            Filter(created=TimeRange(start=_T0 + timedelta(1), end=_T0)),
            "filter.created",
            "before end",
        ),
        (Filter(updated=TimeRange()), "filter.updated", "start, end"),
        (
            Filter(tags_any=tuple(str(i) for i in range(MAX_VALUES + 1))),
            "filter.tags_any",
            "at most",
        ),
        (Filter(ids=("ok", "nul\x00")), "filter.ids[1]", "NUL"),
        (
            Filter(metadata=(MetadataCondition("a", exists=True),) * (MAX_METADATA_CONDITIONS + 1)),
            "filter.metadata",
            "at most",
        ),
    ],
)
def test_a_malformed_filter_names_the_field_and_the_problem(
    flt: Filter, field: str, problem: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_filter(flt)
    assert caught.value.field == field
    assert problem in caught.value.problem
    with pytest.raises(InvalidArgument):
        compile_filter("", flt)


def test_equal_inclusive_bounds_and_a_null_in_any_of_are_fine() -> None:
    validate_filter(_cond(key="a", number_range=NumberRange(gte=5, lte=5)))
    validate_filter(_cond(key="a", any_of=(None, True, 1, 2.5, "x")))
