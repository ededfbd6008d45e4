"""Guardian rules, offline: lines and columns of matches (multi-byte characters, CRLF, a
lone CR, a last line without a line end), scope matching, which rules a check runs, the
order and cap of violations, the budget, compiled rules kept per tenant until its stamp
changes, and the edge's validation naming each field. The store is a fake at the core's
own ``RuleStore`` seam."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from semantic.common.errors import InvalidArgument, Overloaded
from semantic.core import rule_matching
from semantic.core.rule_matching import PatternError, TextIndex, compile_pattern
from semantic.core.rule_service import RuleService
from semantic.core.rules import (
    CheckQuery,
    Kind,
    NodeRule,
    Rule,
    RuleScope,
    RuleWrite,
    ScopeCondition,
    ScopeTest,
    Severity,
    json_equal,
    same_rules,
    scope_holds,
)
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb
from semantic.wire import rules as wire_rules


class FakeRules:
    """Rules held in memory; the stamp changes when ``rules`` is replaced."""

    def __init__(self, rules: Sequence[tuple[str, Rule]], stamp: str | None = "s1") -> None:
        self.rules = list(rules)
        self.stamp_value = stamp
        self.loads = 0
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def write(
        self, tenant: str, node_id: str, rules: Sequence[Rule], *, replace: bool, max_rules: int
    ) -> RuleWrite:
        raise NotImplementedError

    async def remove(self, tenant: str, node_id: str, rule_ids: Sequence[str]) -> int:
        raise NotImplementedError

    async def of_nodes(self, tenant: str, ids: Sequence[str]) -> dict[str, list[Rule]]:
        return {}

    async def stamp(self, tenant: str) -> str | None:
        return self.stamp_value

    async def tenant_rules(self, tenant: str) -> tuple[str | None, list[NodeRule]]:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        self.loads += 1
        return self.stamp_value, [NodeRule(n, r) for n, r in self.rules]

    async def titles(self, tenant: str, ids: Sequence[str]) -> dict[str, str]:
        return {i: f"Pattern {i}" for i in ids}


def _regex(rule_id: str, pattern: str, **fields: Any) -> Rule:
    return Rule(rule_id, pattern, kind=Kind.REGEX, **fields)


async def _check(rules: Sequence[tuple[str, Rule]], text: str, **query: Any) -> Any:
    service = RuleService(FakeRules(rules))
    try:
        return await service.check(CheckQuery("", text, **query))
    finally:
        await service.close()


def _spots(result: Any) -> list[tuple[str, int, int, int, int, str]]:
    return [
        (v.rule_id, v.line, v.column, v.end_line, v.end_column, v.match) for v in result.violations
    ]


# --- lines and columns ------------------------------------------------------------------


def test_columns_count_characters_not_bytes() -> None:
    text = TextIndex("héllo wörld 😀 end")
    data = text.data
    spots = text.positions([data.index(b"w"), data.index(b"end"), len(data)])
    assert spots[data.index(b"w")] == (1, 7)
    assert spots[data.index(b"end")] == (1, 15)  # the emoji is one character
    assert spots[len(data)] == (1, 18)  # just after the last character


def test_lines_end_at_lf_crlf_and_a_lone_cr_and_columns_never_count_a_cr() -> None:
    text = TextIndex("one\r\ntwo\rthree\nfour")
    data = text.data
    assert data == b"one\ntwo\nthree\nfour"
    offsets = [data.index(w) for w in (b"two", b"three", b"four")]
    assert [text.positions(offsets)[o] for o in offsets] == [(2, 1), (3, 1), (4, 1)]


async def test_matches_report_start_and_exclusive_end_in_lines_and_columns() -> None:
    text = "first line\r\n  ça eval(x)\r\nlast eval(y)"  # no line end after the last line
    result = await _check([("fix-1", _regex("no-eval", r"eval\([a-z]\)"))], text)
    assert _spots(result) == [
        ("no-eval", 2, 6, 2, 13, "eval(x)"),
        ("no-eval", 3, 6, 3, 13, "eval(y)"),
    ]
    spanning = await _check([("fix-1", _regex("two-lines", r"line\n  ça"))], text)
    assert _spots(spanning) == [("two-lines", 1, 7, 2, 5, "line\n  ça")]


async def test_anchors_work_per_line_and_a_literal_is_matched_as_written() -> None:
    text = "x = a.b*c\nimport os\n  import sys"
    rules = [
        ("fix-1", _regex("top-import", r"^import \w+$")),
        ("fix-2", Rule("star", "a.b*c")),
        ("fix-3", Rule("dots", "a.b*c.")),  # a literal: "." and "*" are not special
    ]
    assert _spots(await _check(rules, text)) == [
        ("star", 1, 5, 1, 10, "a.b*c"),
        ("top-import", 2, 1, 2, 10, "import os"),
    ]


async def test_case_insensitive_rules_fold_letters_beyond_ascii() -> None:
    rules = [("fix-1", Rule("stop", "ÉTÉ", case_insensitive=True))]
    assert _spots(await _check(rules, "un été, UN ÉTÉ")) == [
        ("stop", 1, 4, 1, 7, "été"),
        ("stop", 1, 12, 1, 15, "ÉTÉ"),
    ]


# --- patterns ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        (r"(\w+)\1", "is not a valid RE2 pattern"),
        (r"(?=x)", "is not a valid RE2 pattern"),
        ("x*", "matches the empty text"),
        (r"\p{L}{1000}", "is too large once compiled"),
        (r"a\C", "uses .C .any single byte."),  # would report half characters
        (r"\\\C", "uses .C"),
    ],
)
def test_patterns_re2_cannot_run_within_bounds_are_refused(pattern: str, problem: str) -> None:
    with pytest.raises(PatternError, match=problem):
        compile_pattern(pattern, regex=True, case_insensitive=False)


def test_an_escaped_backslash_before_c_and_a_literal_backslash_c_are_kept() -> None:
    assert compile_pattern(r"\\C", regex=True, case_insensitive=False).search(b"\\C")
    assert compile_pattern(r"a\C", regex=False, case_insensitive=False).search(b"a\\C")


async def test_a_catastrophic_backtracking_pattern_runs_in_linear_time() -> None:
    text = "a" * 200_000 + "!"
    result = await _check([("fix-1", _regex("nested", "(a+)+$"))], text)
    assert (result.violations, result.rules_checked, result.budget_exceeded) == ([], 1, False)
    assert _spots(await _check([("fix-1", _regex("nested", "(a+)+$"))], "aaa")) == [
        ("nested", 1, 1, 1, 4, "aaa")
    ]


async def test_a_pattern_matching_empty_strings_in_context_reports_only_real_matches() -> None:
    result = await _check([("fix-1", _regex("words", r"\b[a-z]*"))], "ab  cd")
    assert [(v.column, v.match) for v in result.violations] == [(1, "ab"), (5, "cd")]


async def test_rules_run_one_by_one_when_the_set_cannot_be_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rules = [("fix-1", Rule("a", "alpha")), ("fix-2", Rule("b", "beta"))]
    rules += [(f"fix-{i}", Rule(f"x{i}", f"x{i}x")) for i in range(3, 8)]
    text = "alpha then beta"
    with_set = _spots(await _check(rules, text))
    monkeypatch.setattr(rule_matching, "SET_MAX_MEM", 1024)  # too small: no set
    assert (
        _spots(await _check(rules, text))
        == with_set
        == [
            ("a", 1, 1, 1, 6, "alpha"),
            ("b", 1, 12, 1, 16, "beta"),
        ]
    )


class _FailedSet:
    """What re2's set answers when its automaton runs out of memory: no match at all."""

    def Match(self, data: bytes) -> None:  # noqa: N802 (re2's name)
        return None


def test_a_set_pass_that_did_not_reach_the_end_of_the_text_runs_every_rule() -> None:
    compiled = rule_matching.CompiledRules([(f"n{i}", Rule(f"r{i}", f"w{i}")) for i in range(6)])
    assert compiled.candidates(b"w1 w4") == {1, 4, 6}  # 6: the end-of-text sentinel
    compiled._set = _FailedSet()
    assert compiled.candidates(b"w1 w4") is None


# --- which rules run ----------------------------------------------------------------------


def test_json_equality_keeps_booleans_apart_from_numbers() -> None:
    assert json_equal(1, 1.0)
    assert not json_equal(True, 1)
    assert json_equal({"a": [1, "x"]}, {"a": [1.0, "x"]})
    assert not json_equal("1", 1)


@pytest.mark.parametrize(
    ("condition", "metadata", "holds"),
    [
        (ScopeCondition("layer", ScopeTest.EQUALS, "api"), {"layer": "api"}, True),
        (ScopeCondition("layer", ScopeTest.EQUALS, "api"), {"layer": "web"}, False),
        (ScopeCondition("layer", ScopeTest.EQUALS, "api"), {}, False),
        (
            ScopeCondition("file_types", ScopeTest.CONTAINS, "py"),
            {"file_types": ["js", "py"]},
            True,
        ),
        (ScopeCondition("file_types", ScopeTest.CONTAINS, "py"), {"file_types": ["js"]}, False),
        (ScopeCondition("path", ScopeTest.CONTAINS, "/api/"), {"path": "src/api/x.py"}, True),
        (ScopeCondition("path", ScopeTest.CONTAINS, 1.0), {"path": "1"}, False),
        (ScopeCondition("file_type", ScopeTest.ANY_OF, ("py", "pyi")), {"file_type": "pyi"}, True),
        (ScopeCondition("level", ScopeTest.ANY_OF, (1.0, 2.0)), {"level": 2}, True),
        (ScopeCondition("level", ScopeTest.ANY_OF, (1.0,)), {"level": True}, False),
    ],
)
def test_scope_conditions(condition: ScopeCondition, metadata: dict[str, Any], holds: bool) -> None:
    assert scope_holds(RuleScope(metadata=(condition,)), frozenset(), metadata) is holds


def test_a_scope_needs_one_of_its_tags_and_every_condition() -> None:
    scope = RuleScope(
        tags_any=("payments", "billing"),
        metadata=(ScopeCondition("layer", ScopeTest.EQUALS, "api"),),
    )
    assert scope_holds(scope, frozenset({"billing", "x"}), {"layer": "api"})
    assert not scope_holds(scope, frozenset({"x"}), {"layer": "api"})
    assert not scope_holds(scope, frozenset({"payments"}), {"layer": "web"})
    assert scope_holds(RuleScope(), frozenset(), {})  # no scope: everywhere


async def test_a_check_runs_the_active_rules_of_its_severities_whose_scope_holds() -> None:
    api = RuleScope(metadata=(ScopeCondition("layer", ScopeTest.EQUALS, "api"),))
    rules = [
        ("fix-1", Rule("everywhere", "secret", severity=Severity.CRITICAL)),
        ("fix-2", Rule("api-only", "secret", scope=api, severity=Severity.ERROR)),
        ("fix-3", Rule("tagged", "secret", scope=RuleScope(tags_any=("payments",)))),
        ("fix-4", Rule("off", "secret", active=False)),
    ]

    async def ids(**query: Any) -> list[str]:
        result = await _check(rules, "a secret", **query)
        assert result.rules_checked == result.rules_in_scope == len(result.violations)
        return [v.rule_id for v in result.violations]

    assert await ids() == ["everywhere"]
    assert await ids(metadata={"layer": "api"}, tags=frozenset({"payments"})) == [
        "everywhere",  # most severe first at one position
        "api-only",
        "tagged",
    ]
    assert await ids(include_inactive=True) == ["everywhere", "off"]
    assert await ids(severities=frozenset({Severity.ERROR}), metadata={"layer": "api"}) == [
        "api-only"
    ]


async def test_violations_come_by_position_and_are_capped_with_truncated() -> None:
    rules = [("fix-2", Rule("b", "b")), ("fix-1", Rule("a", "a", severity=Severity.INFO))]
    result = await _check(rules, "ab\nba\nab", max_violations=3)
    assert [(v.line, v.column, v.rule_id) for v in result.violations] == [
        (1, 1, "a"),
        (1, 2, "b"),
        (2, 1, "b"),
    ]
    assert result.truncated
    assert [v.node_title for v in result.violations] == ["Pattern fix-1", *["Pattern fix-2"] * 2]
    full = await _check(rules, "ab\nba\nab", max_violations=6)
    assert (len(full.violations), full.truncated) == (6, False)


async def test_a_spent_budget_answers_at_once_with_budget_exceeded() -> None:
    rules = [("fix-1", Rule("a", "a")), ("fix-2", Rule("b", "b"))]
    result = await _check(rules, "ab" * 1000, budget_s=0.0)
    assert result.budget_exceeded
    assert result.rules_checked < 2
    assert not (await _check(rules, "ab", budget_s=5.0)).budget_exceeded


# --- compiled rules kept per tenant -----------------------------------------------------


async def test_compiled_rules_are_kept_until_the_tenants_stamp_changes() -> None:
    store = FakeRules([("fix-1", Rule("a", "alpha"))])
    service = RuleService(store)
    try:
        for _ in range(3):
            assert len((await service.check(CheckQuery("", "alpha"))).violations) == 1
        assert store.loads == 1
        store.rules, store.stamp_value = [("fix-1", Rule("b", "beta"))], "s2"
        result = await service.check(CheckQuery("", "alpha beta"))
        assert [v.rule_id for v in result.violations] == ["b"]
        assert store.loads == 2
        store.stamp_value = None  # a tenant never written: read every time
        await service.check(CheckQuery("", "beta"))
        await service.check(CheckQuery("", "beta"))
        assert store.loads == 4
    finally:
        await service.close()


async def test_more_checks_at_once_than_permits_is_overloaded() -> None:
    store = FakeRules([("fix-1", Rule("a", "alpha"))])
    store.gate = asyncio.Event()
    service = RuleService(store, concurrency=1)
    try:
        first = asyncio.create_task(service.check(CheckQuery("", "alpha")))
        await store.entered.wait()  # the first holds the permit, waiting for its rules
        with pytest.raises(Overloaded):
            await service.check(CheckQuery("", "alpha"))
        store.gate.set()
        assert len((await first).violations) == 1
        assert len((await service.check(CheckQuery("", "alpha"))).violations) == 1
    finally:
        await service.close()


def test_rules_compare_as_written() -> None:
    a = Rule("x", "p", scope=RuleScope(metadata=(ScopeCondition("n", ScopeTest.EQUALS, 1),)))
    b = Rule("x", "p", scope=RuleScope(metadata=(ScopeCondition("n", ScopeTest.EQUALS, 1.0),)))
    assert same_rules([a], [b])
    assert not same_rules([a], [Rule("x", "p")])
    assert not same_rules([a], [a, Rule("y", "p")])


# --- the edge -----------------------------------------------------------------------------


def _rule(**fields: Any) -> cpb.Rule:
    return cpb.Rule(**{"id": "no-eval", "pattern": "eval(", **fields})


@pytest.mark.parametrize(
    ("items", "field"),
    [
        ([_rule(id="")], "rules[0].id"),
        ([_rule(id="No-Eval")], "rules[0].id"),
        ([_rule(pattern="")], "rules[0].pattern"),
        ([_rule(pattern="x" * 1001)], "rules[0].pattern"),
        ([_rule(pattern="a\x00b")], "rules[0].pattern"),
        ([_rule(), _rule(pattern=r"(\w)\1", kind=cpb.RULE_KIND_REGEX)], "rules[1].pattern"),
        ([_rule(kind=7)], "rules[0].kind"),
        ([_rule(severity=9)], "rules[0].severity"),
        ([_rule(action="x" * 201)], "rules[0].action"),
        ([_rule(message="x" * 2001)], "rules[0].message"),
        ([_rule(), _rule()], "rules[1].id"),
        (
            [_rule(scope=cpb.RuleScope(metadata=[cpb.ScopeCondition(key="layer")]))],
            "rules[0].scope.metadata[0]",
        ),
        (
            [_rule(scope=cpb.RuleScope(metadata=[cpb.ScopeCondition(key="")]))],
            "rules[0].scope.metadata[0].key",
        ),
        ([_rule(scope=cpb.RuleScope(tags_any=[""]))], "rules[0].scope.tags_any[0]"),
    ],
)
def test_bad_rules_are_invalid_argument_naming_the_field(items: list[cpb.Rule], field: str) -> None:
    with pytest.raises(InvalidArgument) as bad:
        wire_rules.rules_from_proto(items, "rules", 50)
    assert bad.value.field == field


def test_a_non_finite_scope_value_names_its_path() -> None:
    condition = cpb.ScopeCondition(key="level")
    condition.equals.number_value = float("nan")
    with pytest.raises(InvalidArgument) as bad:
        wire_rules.rules_from_proto([_rule(scope=cpb.RuleScope(metadata=[condition]))], "r", 5)
    assert bad.value.field == "r[0].scope.metadata[0].equals"


def test_rules_round_trip_through_the_wire() -> None:
    condition = cpb.ScopeCondition(key="file_type")
    condition.any_of.extend(["py", "pyi"])
    message = _rule(
        pattern=r"\beval\(",
        kind=cpb.RULE_KIND_REGEX,
        case_insensitive=True,
        severity=cpb.RULE_SEVERITY_CRITICAL,
        action="block",
        message="why",
        active=False,
        scope=cpb.RuleScope(tags_any=["api"], metadata=[condition]),
    )
    (rule,) = wire_rules.rules_from_proto([message], "rules", 5)
    assert rule.scope.metadata[0] == ScopeCondition("file_type", ScopeTest.ANY_OF, ("py", "pyi"))
    assert (rule.kind, rule.severity, rule.active) == (Kind.REGEX, Severity.CRITICAL, False)
    assert wire_rules.rule_to_proto(rule) == message
    defaults = wire_rules.rules_from_proto([_rule()], "rules", 5)[0]
    assert (defaults.kind, defaults.severity, defaults.active) == (
        Kind.LITERAL,
        Severity.WARNING,
        True,
    )


def test_check_requests_are_bounded_before_any_work() -> None:
    limits = wire_rules.CheckLimits(max_text_bytes=10, max_violations=50, budget_ms=300)
    with pytest.raises(InvalidArgument) as big:
        wire_rules.check_from_proto(pb.CheckRequest(text="é" * 6), "", limits)  # 12 bytes
    assert big.value.field == "text"
    query = wire_rules.check_from_proto(pb.CheckRequest(text="é" * 5, budget_ms=9000), "", limits)
    assert (query.max_violations, query.budget_s) == (50, 0.3)
    for request, field in (
        (pb.CheckRequest(max_violations=51), "max_violations"),
        (pb.CheckRequest(severities=[cpb.RULE_SEVERITY_UNSPECIFIED]), "severities[0]"),
        (pb.CheckRequest(scope=pb.CheckScope(tags=["ok", ""])), "scope.tags[1]"),
    ):
        with pytest.raises(InvalidArgument) as bad:
            wire_rules.check_from_proto(request, "", limits)
        assert bad.value.field == field
