"""The edge rules of semantic.common.validation, each at its boundaries."""

from datetime import UTC, datetime

import pytest

from semantic.common import validation
from semantic.common.errors import InvalidArgument


def _problem(call: object, *args: object, **kwargs: object) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    return caught.value


@pytest.mark.parametrize("value", ["", "acme", "A", "a" * 64, "t-2_x", "9lives"])
def test_documented_tenant_names_are_accepted(value: str) -> None:
    assert validation.tenant(value, "tenant") == value


@pytest.mark.parametrize(
    "value", ["../x y", "a" * 65, "-acme", "_acme", "acme\x00", "acmé", "a.b", "acme\n", "²"]
)
def test_other_tenant_names_are_rejected_naming_the_field(value: str) -> None:
    problem = _problem(validation.tenant, value, "nodes[2].tenant")
    assert problem.field == "nodes[2].tenant"
    assert "tenant name" in problem.problem


def test_node_ids_are_1_to_256_characters_without_control_characters() -> None:
    assert validation.node_id("page:42", "id") == "page:42"
    assert validation.node_id("x" * 256, "id") == "x" * 256
    assert validation.node_id("naïve id with spaces", "id")
    assert "longer than 256" in _problem(validation.node_id, "x" * 257, "id").problem
    assert "empty" in _problem(validation.node_id, "", "id").problem
    assert "empty" in _problem(validation.node_id, "   ", "id").problem
    for bad in ("a\x00b", "a\nb", "a\x7fb", "a\x85b"):
        assert "control" in _problem(validation.node_id, bad, "id").problem


def test_slugs_are_1_to_512_characters_without_whitespace_or_control_characters() -> None:
    assert validation.slug("blog/how-to-reset", "slug")
    assert validation.slug("s" * 512, "slug")
    assert "longer than 512" in _problem(validation.slug, "s" * 513, "slug").problem
    assert "empty" in _problem(validation.slug, "", "slug").problem
    for bad in ("a b", "a\tb", "a\u00a0b", "a\x00b"):
        assert "whitespace" in _problem(validation.slug, bad, "slug").problem


@pytest.mark.parametrize("value", ["page", "blog_post", "a", "a" + "0" * 63, "fix_pattern2"])
def test_names_match_the_documented_pattern(value: str) -> None:
    assert validation.name(value, "content_type") == value


@pytest.mark.parametrize(
    "value", ["Page X!", "Page", "2page", "_page", "a" * 65, "page\x00", "pâge"]
)
def test_names_outside_the_pattern_are_rejected(value: str) -> None:
    problem = _problem(validation.name, value, "nodes[0].content_type")
    assert problem.field == "nodes[0].content_type"
    assert "[a-z][a-z0-9_]{0,63}" in problem.problem


def test_short_ids_and_user_ids() -> None:
    assert validation.short_id("", "source") == ""
    assert "empty" in _problem(validation.short_id, "", "event_id", required=True).problem
    assert validation.short_id("e" * 128, "event_id", required=True)
    assert "128" in _problem(validation.short_id, "e" * 129, "event_id").problem
    assert "control" in _problem(validation.short_id, "e\x00", "session_id").problem
    assert validation.user_id("u" * 256, "user_id", required=True)
    assert "256" in _problem(validation.user_id, "u" * 257, "user_id").problem
    assert validation.user_id("", "user_id") == ""
    assert "empty" in _problem(validation.user_id, " ", "user_id", required=True).problem


def test_tags_and_texts_refuse_nul_and_excess_length() -> None:
    assert validation.tag("t" * 128, "tags[0]")
    assert "128" in _problem(validation.tag, "t" * 129, "tags[0]").problem
    assert "empty" in _problem(validation.tag, "", "tags[0]").problem
    assert "NUL" in _problem(validation.tag, "a\x00", "tags[0]").problem
    assert validation.text("", "title", 10) == ""
    assert validation.text("x" * 10, "title", 10)
    assert "longer than 10" in _problem(validation.text, "x" * 11, "title", 10).problem
    assert "NUL" in _problem(validation.text, "a\x00b", "body", 100).problem


def test_integers_fit_their_columns() -> None:
    assert validation.integer(2**63 - 1, "version") == 2**63 - 1
    assert validation.integer(0, "version") == 0
    problem = _problem(validation.integer, 2**63, "version")
    assert problem.field == "version"
    assert str(2**63 - 1) in problem.problem
    assert validation.integer(2**31 - 1, "chunk", maximum=validation.INT32_MAX)
    assert _problem(validation.integer, 2**31, "chunk", maximum=validation.INT32_MAX)
    assert _problem(validation.integer, 0, "version", minimum=1)
    assert _problem(validation.integer, True, "version")


def test_numbers_are_finite_and_within_bounds() -> None:
    assert validation.number(0.5, "w", minimum=0, maximum=1) == 0.5
    assert validation.number(0, "w", minimum=0) == 0.0
    for bad in (float("nan"), float("inf"), float("-inf")):
        assert "finite" in _problem(validation.number, bad, "min_score").problem
    assert ">= 0" in _problem(validation.number, -0.1, "w", minimum=0).problem
    assert "<= 100" in _problem(validation.number, 100.5, "w", maximum=100).problem


@pytest.mark.parametrize(("text", "expected"), [("", None), ("1", 1), ("2147483647", 2**31 - 1)])
def test_space_ids_are_positive_int32_in_ascii_digits(text: str, expected: int | None) -> None:
    assert validation.space_id(text) == expected


@pytest.mark.parametrize(
    "text", ["²", "١٢", "0", "2147483648", "99999999999", "-1", "+3", " 3", "s3"]
)
def test_other_space_ids_are_rejected(text: str) -> None:
    problem = _problem(validation.space_id, text, "space_id")
    assert problem.field == "space_id"


def test_timestamps_span_the_years_1_to_9999_with_valid_nanos() -> None:
    first = validation.timestamp(validation.MIN_TIMESTAMP_SECONDS, 1000, "t")
    assert first == datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
    last = validation.timestamp(validation.MAX_TIMESTAMP_SECONDS, 999_998_999, "t")
    assert last == datetime(9999, 12, 31, 23, 59, 59, 999_998, tzinfo=UTC)
    # The two ends are what the driver stores as -infinity and infinity: refused.
    assert _problem(validation.timestamp, validation.MIN_TIMESTAMP_SECONDS, 999, "t").field == "t"
    end = _problem(validation.timestamp, validation.MAX_TIMESTAMP_SECONDS, 999_999_999, "t")
    assert "before 9999-12-31T23:59:59.999999Z" in end.problem
    assert validation.timestamp(0, 1500, "t") == datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
    assert (
        "years 1 and 9999"
        in _problem(
            validation.timestamp, validation.MAX_TIMESTAMP_SECONDS + 1, 0, "occurred_at"
        ).problem
    )
    assert _problem(validation.timestamp, validation.MIN_TIMESTAMP_SECONDS - 1, 0, "t")
    assert _problem(validation.timestamp, 0, -1, "t").field == "t.nanos"
    assert _problem(validation.timestamp, 0, 1_000_000_000, "t").field == "t.nanos"


def test_json_parts() -> None:
    assert validation.json_key("k" * 256, "metadata") == "k" * 256
    assert "empty" in _problem(validation.json_key, "", "metadata").problem
    assert "256" in _problem(validation.json_key, "k" * 257, "metadata").problem
    assert "NUL" in _problem(validation.json_key, "a\x00", "metadata").problem
    assert validation.json_string("", "metadata.a") == ""
    assert "NUL" in _problem(validation.json_string, "\x00", "metadata.a").problem
    assert validation.json_number(1e308, "metadata.a") == 1e308
    problem = _problem(validation.json_number, float("nan"), "nodes[3].metadata.price")
    assert str(problem) == "nodes[3].metadata.price: must be a finite number"
    validation.json_depth(validation.MAX_JSON_DEPTH, "metadata")
    assert "deeper" in _problem(validation.json_depth, validation.MAX_JSON_DEPTH + 1, "m").problem


def test_counts_and_repeats() -> None:
    validation.count(3, "nodes", 3, minimum=1)
    assert "at least 1 entry" in _problem(validation.count, 0, "nodes", 3, minimum=1).problem
    assert "at most 3" in _problem(validation.count, 4, "nodes", 3).problem
    assert validation.repeated(["a", "b", "c"]) is None
    assert validation.repeated([("c", 0), ("c", 1), ("t", 0), ("c", 1)]) == (1, 3)
