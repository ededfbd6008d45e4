"""Guardian rules: patterns attached to nodes that ``Check`` looks for in a text, each
with a scope, a severity and an action (README_vector.md, "Guardian rules").

A rule is unique per (tenant, node, rule id). Clients write a node's rules with the node
(``NodeRecord.rules``: when given, the node's rules become exactly those), with
``WriteRules`` / ``RemoveRules``, or on a ContentEvent; deleting a node deletes its rules.

A rule applies to a check when it is active (or inactive ones are asked for), its
severity is one asked for, and its scope holds for the check's scope: at least one of its
``tags_any`` among the check's tags (when it has any), and every metadata condition true
of the check's metadata (:func:`scope_holds`). Matching itself is
:mod:`semantic.core.rule_matching`; :class:`RuleService` runs it off the event loop, within
a time budget (:mod:`semantic.core.rule_service`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

RULE_ID_PATTERN = r"[a-z0-9][a-z0-9_.-]{0,63}"
MAX_PATTERN_CHARS = 1000
MAX_ACTION_CHARS = 200
MAX_MESSAGE_CHARS = 2000
MAX_SCOPE_TAGS = 64
MAX_SCOPE_CONDITIONS = 16
MAX_ANY_OF = 1000


class Kind(StrEnum):
    """How a pattern is read."""

    LITERAL = "literal"
    REGEX = "regex"


class Severity(StrEnum):
    """How serious a violation is (:data:`RANK` orders them)."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


RANK = {Severity.INFO: 1, Severity.WARNING: 2, Severity.ERROR: 3, Severity.CRITICAL: 4}


class ScopeTest(StrEnum):
    """The test of a scope condition."""

    EQUALS = "equals"
    CONTAINS = "contains"
    ANY_OF = "any_of"


@dataclass(frozen=True)
class ScopeCondition:
    """``key`` of the check's metadata passes ``test`` against ``value`` (a JSON value; a
    tuple of them for ANY_OF)."""

    key: str
    test: ScopeTest
    value: Any


@dataclass(frozen=True)
class RuleScope:
    """Where a rule applies; empty: everywhere."""

    tags_any: tuple[str, ...] = ()
    metadata: tuple[ScopeCondition, ...] = ()


@dataclass(frozen=True)
class Rule:
    """A guardian rule as written by a client (``updated_at`` is the store's)."""

    id: str
    pattern: str
    kind: Kind = Kind.LITERAL
    case_insensitive: bool = False
    scope: RuleScope = field(default_factory=RuleScope)
    severity: Severity = Severity.WARNING
    action: str = ""
    message: str = ""
    active: bool = True
    updated_at: datetime | None = None

    def same_as(self, other: Rule) -> bool:
        """Equal as written by a client (times aside)."""
        return _written(self) == _written(other)


def _written(rule: Rule) -> tuple[Any, ...]:
    scope = (
        rule.scope.tags_any,
        tuple((c.key, c.test, _json_key(c.value)) for c in rule.scope.metadata),
    )
    return (
        rule.id,
        rule.pattern,
        rule.kind,
        rule.case_insensitive,
        scope,
        rule.severity,
        rule.action,
        rule.message,
        rule.active,
    )


def _json_key(value: Any) -> Any:
    """A comparable form of a JSON value (bools apart from numbers, 1 equal to 1.0)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return (type(value).__name__, value)
    if isinstance(value, int | float):
        return ("number", float(value))
    if isinstance(value, list | tuple):
        return ("list", tuple(_json_key(v) for v in value))
    if isinstance(value, Mapping):
        return ("object", tuple(sorted((k, _json_key(v)) for k, v in value.items())))
    return ("other", repr(value))


def same_rules(a: Sequence[Rule], b: Sequence[Rule]) -> bool:
    """The same rules, in any order."""
    ordered = sorted(a, key=lambda r: r.id), sorted(b, key=lambda r: r.id)
    return len(a) == len(b) and all(x.same_as(y) for x, y in zip(*ordered, strict=True))


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: numbers numerically, ``true`` never equal to ``1``."""
    return bool(_json_key(a) == _json_key(b))


def condition_holds(condition: ScopeCondition, metadata: Mapping[str, Any]) -> bool:
    """Whether the check's metadata passes the condition (a missing key fails)."""
    if condition.key not in metadata:
        return False
    found = metadata[condition.key]
    if condition.test is ScopeTest.EQUALS:
        return json_equal(found, condition.value)
    if condition.test is ScopeTest.ANY_OF:
        return any(json_equal(found, v) for v in condition.value)
    if isinstance(found, list):
        return any(json_equal(item, condition.value) for item in found)
    if isinstance(found, str) and isinstance(condition.value, str):
        return condition.value in found
    return False


def scope_holds(scope: RuleScope, tags: frozenset[str], metadata: Mapping[str, Any]) -> bool:
    """Whether a rule of ``scope`` applies to a check of ``tags`` and ``metadata``."""
    if scope.tags_any and tags.isdisjoint(scope.tags_any):
        return False
    return all(condition_holds(c, metadata) for c in scope.metadata)


@dataclass(frozen=True)
class NodeRule:
    """A rule with the node it belongs to."""

    node_id: str
    rule: Rule


@dataclass(frozen=True)
class RuleWrite:
    """What a write of rules did."""

    created: int = 0
    updated: int = 0
    removed: int = 0


@dataclass(frozen=True)
class CheckQuery:
    """A text to check against the rules of ``tenant``."""

    tenant: str
    text: str
    tags: frozenset[str] = frozenset()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    severities: frozenset[Severity] = frozenset()
    """Empty: every severity."""
    max_violations: int = 100
    include_inactive: bool = False
    budget_s: float = 2.0

    def applies(self, rule: Rule) -> bool:
        """Whether ``rule`` is one this check runs."""
        return (
            (rule.active or self.include_inactive)
            and (not self.severities or rule.severity in self.severities)
            and scope_holds(rule.scope, self.tags, self.metadata)
        )


@dataclass(frozen=True)
class Violation:
    """One match of a rule: 1-based lines and columns (characters), end exclusive."""

    rule_id: str
    node_id: str
    node_title: str
    severity: Severity
    action: str
    message: str
    line: int
    column: int
    end_line: int
    end_column: int
    match: str


@dataclass(frozen=True)
class CheckResult:
    """What a check found, and how far it got."""

    violations: list[Violation]
    rules_in_scope: int
    rules_checked: int
    truncated: bool
    budget_exceeded: bool
    elapsed_ms: int


class RuleStore(Protocol):
    """Rules in the database (the write path writes a node's own with the node)."""

    async def write(
        self, tenant: str, node_id: str, rules: Sequence[Rule], *, replace: bool, max_rules: int
    ) -> RuleWrite:
        """Create or update (``replace``: and remove the others) under the node's lock, in
        one transaction; NotFound when the node does not exist, InvalidArgument when the
        node would hold more than ``max_rules``."""
        ...

    async def remove(self, tenant: str, node_id: str, rule_ids: Sequence[str]) -> int:
        """Remove by id; how many were removed."""
        ...

    async def of_nodes(self, tenant: str, ids: Sequence[str]) -> dict[str, list[Rule]]:
        """Each node's rules, by rule id."""
        ...

    async def stamp(self, tenant: str) -> str | None:
        """A value that changes whenever the tenant's rules change (None: never had any)."""
        ...

    async def tenant_rules(self, tenant: str) -> tuple[str | None, list[NodeRule]]:
        """Every rule of the tenant and the stamp they go with (one point in time)."""
        ...

    async def titles(self, tenant: str, ids: Sequence[str]) -> dict[str, str]:
        """Titles of the nodes that exist."""
        ...
