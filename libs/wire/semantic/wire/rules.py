"""Guardian rule messages <-> core values: Node.rules on writes and reads, WriteRules,
RemoveRules and Check requests validated (a bad value is InvalidArgument naming its field,
e.g. ``nodes[0].rules.items[2].pattern: is not a valid RE2 pattern: ...``), check results
out."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import struct_pb2

from semantic.common import validation
from semantic.common.errors import InvalidArgument
from semantic.core.rule_matching import PatternError, compile_pattern
from semantic.core.rules import (
    MAX_ACTION_CHARS,
    MAX_ANY_OF,
    MAX_MESSAGE_CHARS,
    MAX_PATTERN_CHARS,
    MAX_SCOPE_CONDITIONS,
    MAX_SCOPE_TAGS,
    RULE_ID_PATTERN,
    CheckQuery,
    CheckResult,
    Kind,
    Rule,
    RuleScope,
    ScopeCondition,
    ScopeTest,
    Severity,
)
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb
from semantic.wire.json_values import struct_to_dict, value_to_python

DEFAULT_VIOLATIONS = 100
MAX_SCOPE_BYTES = 65_536
"""Serialized size of a rule's scope."""
_RULE_ID = re.compile(RULE_ID_PATTERN)
_KINDS = {
    cpb.RULE_KIND_UNSPECIFIED: Kind.LITERAL,
    cpb.RULE_KIND_LITERAL: Kind.LITERAL,
    cpb.RULE_KIND_REGEX: Kind.REGEX,
}
_KINDS_OUT = {Kind.LITERAL: cpb.RULE_KIND_LITERAL, Kind.REGEX: cpb.RULE_KIND_REGEX}
_SEVERITIES = {
    cpb.RULE_SEVERITY_INFO: Severity.INFO,
    cpb.RULE_SEVERITY_WARNING: Severity.WARNING,
    cpb.RULE_SEVERITY_ERROR: Severity.ERROR,
    cpb.RULE_SEVERITY_CRITICAL: Severity.CRITICAL,
}
_SEVERITIES_OUT = {v: k for k, v in _SEVERITIES.items()}


@dataclass(frozen=True)
class CheckLimits:
    """Limits of a Check request (the search service's settings)."""

    max_text_bytes: int = 1 << 20
    max_violations: int = 1000
    budget_ms: int = 2000
    max_tags: int = 64
    max_metadata_bytes: int = 65_536


def rule_id(value: str, field: str) -> str:
    """A rule id: ``[a-z0-9][a-z0-9_.-]{0,63}``."""
    if not value:
        raise InvalidArgument(field, "must not be empty")
    if not _RULE_ID.fullmatch(value):
        raise InvalidArgument(field, f"{value[:64]!r} must match {RULE_ID_PATTERN}")
    return value


def _condition(message: cpb.ScopeCondition, field: str) -> ScopeCondition:
    if not message.key:
        raise InvalidArgument(f"{field}.key", "must not be empty")
    validation.json_key(message.key, f"{field}.key")
    test = message.WhichOneof("test")
    if test is None:
        raise InvalidArgument(field, "set one test: equals, contains or any_of")
    if test == "any_of":
        values = message.any_of.values
        validation.count(len(values), f"{field}.any_of", MAX_ANY_OF, minimum=1)
        found = tuple(value_to_python(v, f"{field}.any_of[{i}]") for i, v in enumerate(values))
        return ScopeCondition(message.key, ScopeTest.ANY_OF, found)
    value = getattr(message, test)
    return ScopeCondition(message.key, ScopeTest(test), value_to_python(value, f"{field}.{test}"))


def scope_from_proto(message: cpb.RuleScope, field: str) -> RuleScope:
    """A rule's scope: tags and metadata conditions, checked."""
    if message.ByteSize() > MAX_SCOPE_BYTES:
        raise InvalidArgument(field, f"is larger than {MAX_SCOPE_BYTES} bytes")
    validation.count(len(message.tags_any), f"{field}.tags_any", MAX_SCOPE_TAGS)
    for i, tag in enumerate(message.tags_any):
        validation.tag(tag, f"{field}.tags_any[{i}]")
    validation.count(len(message.metadata), f"{field}.metadata", MAX_SCOPE_CONDITIONS)
    conditions = tuple(
        _condition(c, f"{field}.metadata[{i}]") for i, c in enumerate(message.metadata)
    )
    return RuleScope(tuple(dict.fromkeys(message.tags_any)), conditions)


def rule_from_proto(message: cpb.Rule, field: str) -> Rule:
    """One rule as written (``updated_at`` is ignored); its pattern compiled once to be
    sure RE2 takes it."""
    rule_id(message.id, f"{field}.id")
    if not message.pattern:
        raise InvalidArgument(f"{field}.pattern", "must not be empty")
    validation.text(message.pattern, f"{field}.pattern", MAX_PATTERN_CHARS)
    if message.kind not in _KINDS:
        raise InvalidArgument(f"{field}.kind", f"{message.kind} is not a RuleKind")
    kind = _KINDS[message.kind]
    try:
        compile_pattern(
            message.pattern,
            regex=kind is Kind.REGEX,
            case_insensitive=message.case_insensitive,
        )
    except PatternError as exc:
        raise InvalidArgument(f"{field}.pattern", exc.reason) from exc
    severity = Severity.WARNING
    if message.severity != cpb.RULE_SEVERITY_UNSPECIFIED:
        if message.severity not in _SEVERITIES:
            raise InvalidArgument(f"{field}.severity", f"{message.severity} is not a RuleSeverity")
        severity = _SEVERITIES[message.severity]
    validation.text(message.action, f"{field}.action", MAX_ACTION_CHARS)
    validation.text(message.message, f"{field}.message", MAX_MESSAGE_CHARS)
    return Rule(
        id=message.id,
        pattern=message.pattern,
        kind=kind,
        case_insensitive=message.case_insensitive,
        scope=scope_from_proto(message.scope, f"{field}.scope"),
        severity=severity,
        action=message.action,
        message=message.message,
        active=message.active if message.HasField("active") else True,
    )


def rules_from_proto(items: Sequence[cpb.Rule], field: str, maximum: int) -> tuple[Rule, ...]:
    """A list of rules: at most ``maximum``, each id once."""
    validation.count(len(items), field, maximum)
    rules = tuple(rule_from_proto(item, f"{field}[{i}]") for i, item in enumerate(items))
    twice = validation.repeated(r.id for r in rules)
    if twice is not None:
        raise InvalidArgument(f"{field}[{twice[1]}].id", f"repeats the id of {field}[{twice[0]}]")
    return rules


def node_rules(node: cpb.Node, field: str, maximum: int) -> tuple[Rule, ...] | None:
    """``Node.rules`` of a write: None when unset (kept), else the rules."""
    if not node.HasField("rules"):
        return None
    return rules_from_proto(node.rules.items, f"{field}.rules.items", maximum)


def rule_to_proto(rule: Rule) -> cpb.Rule:
    """A rule as read."""
    out = cpb.Rule(
        id=rule.id,
        pattern=rule.pattern,
        kind=_KINDS_OUT[rule.kind],
        case_insensitive=rule.case_insensitive,
        severity=_SEVERITIES_OUT[rule.severity],
        action=rule.action,
        message=rule.message,
        active=rule.active,
    )
    out.scope.tags_any.extend(rule.scope.tags_any)
    for condition in rule.scope.metadata:
        item = out.scope.metadata.add(key=condition.key)
        if condition.test is ScopeTest.ANY_OF:
            item.any_of.extend(list(condition.value))
        else:
            _set_value(getattr(item, condition.test.value), condition.value)
    if rule.updated_at is not None:
        out.updated_at.FromDatetime(rule.updated_at)
    return out


def _set_value(target: struct_pb2.Value, value: Any) -> None:
    """Fill a ``google.protobuf.Value`` from a JSON value."""
    holder = struct_pb2.ListValue()
    holder.append(value)
    target.CopyFrom(holder.values[0])


def attach(nodes: Sequence[cpb.Node], rules: Mapping[str, Sequence[Rule]]) -> None:
    """Fill each node's ``rules`` (present, possibly empty) from ``rules``."""
    for node in nodes:
        node.rules.SetInParent()  # present even when empty
        node.rules.items.extend(rule_to_proto(r) for r in rules.get(node.id, ()))


def write_from_proto(
    request: pb.WriteRulesRequest, maximum: int
) -> tuple[str, tuple[Rule, ...], bool]:
    """(node id, rules, replace) of a WriteRules request."""
    validation.node_id(request.node_id, "node_id")
    if not request.replace and not request.rules:
        raise InvalidArgument("rules", "give at least one rule (or set replace to remove all)")
    return request.node_id, rules_from_proto(request.rules, "rules", maximum), request.replace


def remove_from_proto(request: pb.RemoveRulesRequest, maximum: int) -> tuple[str, list[str]]:
    """(node id, rule ids) of a RemoveRules request."""
    validation.node_id(request.node_id, "node_id")
    validation.count(len(request.rule_ids), "rule_ids", maximum, minimum=1)
    ids = [rule_id(r, f"rule_ids[{i}]") for i, r in enumerate(request.rule_ids)]
    return request.node_id, list(dict.fromkeys(ids))


def check_from_proto(request: pb.CheckRequest, tenant: str, limits: CheckLimits) -> CheckQuery:
    """The check a Check request asks for; the text's size is checked before anything."""
    text = request.text
    if len(text) > limits.max_text_bytes or (
        4 * len(text) > limits.max_text_bytes
        and len(text.encode("utf-8", "surrogatepass")) > limits.max_text_bytes
    ):
        raise InvalidArgument(
            "text", f"is larger than {limits.max_text_bytes} bytes (UTF-8); check it in parts"
        )
    scope = request.scope
    validation.count(len(scope.tags), "scope.tags", limits.max_tags)
    for i, tag in enumerate(scope.tags):
        validation.tag(tag, f"scope.tags[{i}]")
    metadata: dict[str, Any] = {}
    if scope.HasField("metadata"):
        if scope.metadata.ByteSize() > limits.max_metadata_bytes:
            raise InvalidArgument(
                "scope.metadata", f"is larger than {limits.max_metadata_bytes} bytes"
            )
        metadata = struct_to_dict(scope.metadata, "scope.metadata")
    severities = set()
    for i, value in enumerate(request.severities):
        if value not in _SEVERITIES:
            raise InvalidArgument(f"severities[{i}]", f"{value} is not a RuleSeverity to filter by")
        severities.add(_SEVERITIES[value])
    most = validation.integer(
        request.max_violations, "max_violations", maximum=limits.max_violations
    )
    return CheckQuery(
        tenant=tenant,
        text=text,
        tags=frozenset(scope.tags),
        metadata=metadata,
        severities=frozenset(severities),
        max_violations=most or min(DEFAULT_VIOLATIONS, limits.max_violations),
        include_inactive=request.include_inactive,
        budget_s=min(request.budget_ms or limits.budget_ms, limits.budget_ms) / 1000,
    )


def check_to_proto(result: CheckResult) -> pb.CheckResponse:
    """A check's answer."""
    return pb.CheckResponse(
        violations=[
            pb.Violation(
                rule_id=v.rule_id,
                node_id=v.node_id,
                node_title=v.node_title,
                severity=_SEVERITIES_OUT[v.severity],
                action=v.action,
                message=v.message,
                line=v.line,
                column=v.column,
                end_line=v.end_line,
                end_column=v.end_column,
                match=v.match,
            )
            for v in result.violations
        ],
        rules_in_scope=result.rules_in_scope,
        rules_checked=result.rules_checked,
        truncated=result.truncated,
        budget_exceeded=result.budget_exceeded,
        elapsed_ms=min(result.elapsed_ms, validation.INT32_MAX),
    )
