"""Score modifiers: re-ranking hits by numbers stored on their nodes (README_vector.md,
"Score modifiers").

A modifier reads one input per node: a numeric metadata field, a feedback signal, or a
condition (1 when the node has a tag, or a metadata value, else 0). With ``x`` the input:

- MULTIPLY: the score is multiplied by ``clamp(1 + weight (x - center), min, max)``, ``min``
  defaulting to 0 (a factor never turns a score's sign);
- ADD: ``clamp(weight (x - center), min, max)`` is added.

score = base x every factor + every addend, modifiers in the order given. A missing or
non-numeric input (booleans and numeric strings are not numbers) skips the modifier for
that node, or uses ``missing`` when set. Every value that reaches the arithmetic is finite
and a result that overflows is replaced by the base score, so no node's data can fail a
query or produce NaN. Pure functions: the service fetches nodes and feedback first.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from semantic.common.errors import InvalidArgument
from semantic.core.domain import Hit, NodeRecord
from semantic.core.feedback import FeedbackService, NodeFeedback

MAX_MODIFIERS = 16
DEFAULT_WEIGHT = 0.2
"""The weight of a modifier that sets none: the one measured safe on NFCorpus for a rate in
[0, 1] (README_vector.md, "Knowledge features")."""
MAX_NAME_CHARS = 64
MAX_KEY_CHARS = 256
SIGNALS = ("success_rate", "confidence", "applied", "avg_minutes_saved")
_CONTENT_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class Op(StrEnum):
    """How a modifier changes a score."""

    MULTIPLY = "multiply"
    ADD = "add"


class Source(StrEnum):
    """Where a modifier's input comes from."""

    METADATA = "metadata"
    FEEDBACK = "feedback"
    TAG = "tag"
    METADATA_CONTAINS = "metadata_contains"


@dataclass(frozen=True)
class Modifier:
    """One validated modifier (see module doc)."""

    source: Source
    key: str
    """The metadata key, the feedback signal or the tag."""
    op: Op = Op.MULTIPLY
    weight: float = DEFAULT_WEIGHT
    center: float = 0.0
    low: float | None = None
    high: float | None = None
    missing: float | None = None
    value: Any = None
    """The value looked for (METADATA_CONTAINS)."""
    name: str = ""

    @property
    def label(self) -> str:
        """Its name in explanations."""
        return self.name or f"{self.source.value}:{self.key}"

    @property
    def uses_feedback(self) -> bool:
        """Whether it reads the nodes' feedback."""
        return self.source is Source.FEEDBACK


@dataclass(frozen=True)
class Contribution:
    """What one modifier did to one hit."""

    name: str
    op: Op
    input: float
    effect: float
    skipped: bool = False


def check(modifiers: Sequence[Modifier], path: str = "modifiers") -> None:
    """INVALID_ARGUMENT naming the field of the first modifier that cannot apply."""
    if len(modifiers) > MAX_MODIFIERS:
        raise InvalidArgument(path, f"at most {MAX_MODIFIERS} modifiers")
    for index, modifier in enumerate(modifiers):
        where = f"{path}[{index}]"
        for name in ("weight", "center", "low", "high", "missing"):
            value = getattr(modifier, name)
            if value is not None and not math.isfinite(value):
                shown = {"low": "min", "high": "max"}.get(name, name)
                raise InvalidArgument(f"{where}.{shown}", "must be a finite number")
        if modifier.low is not None and modifier.high is not None and modifier.low > modifier.high:
            raise InvalidArgument(f"{where}.min", "must not exceed max")
        if len(modifier.name) > MAX_NAME_CHARS:
            raise InvalidArgument(f"{where}.name", f"at most {MAX_NAME_CHARS} characters")
        if modifier.source is Source.FEEDBACK and modifier.key not in SIGNALS:
            raise InvalidArgument(f"{where}.feedback", f"must be one of {', '.join(SIGNALS)}")
        if not modifier.key or len(modifier.key) > MAX_KEY_CHARS:
            raise InvalidArgument(f"{where}.input", f"1-{MAX_KEY_CHARS} characters")
        if "\x00" in modifier.key or "\x00" in modifier.name:
            raise InvalidArgument(f"{where}.input", "must not contain NUL")


def needs_feedback(modifiers: Sequence[Modifier]) -> bool:
    """Whether any modifier reads feedback."""
    return any(m.uses_feedback for m in modifiers)


def rescore(
    node: NodeRecord,
    base: float,
    chosen: Sequence[Modifier],
    feedback: Callable[[str], NodeFeedback | None],
) -> tuple[float, list[Contribution]]:
    """A node's score after ``chosen`` (``base`` when a result would not be finite) and
    each modifier's contribution."""
    contributions = []
    factor, addend = 1.0, 0.0
    for modifier in chosen:
        contribution = _one(modifier, node, feedback)
        contributions.append(contribution)
        if contribution.skipped:
            continue
        if modifier.op is Op.MULTIPLY:
            factor *= contribution.effect
        else:
            addend += contribution.effect
    score = base * factor + addend
    if not math.isfinite(score):  # each effect finite, together an overflow: none applies
        return base, [
            replace(c, effect=1.0 if c.op is Op.MULTIPLY else 0.0, skipped=True)
            for c in contributions
        ]
    return score, contributions


def apply(
    hits: list[Hit],
    choose: Callable[[NodeRecord], Sequence[Modifier]],
    feedback: Callable[[str], NodeFeedback | None],
) -> None:
    """Re-score and re-rank ``hits`` (nodes attached) in place by the modifiers ``choose``
    gives each node, recording each hit's base score and contributions. The order is the
    new score, then the old rank (stable)."""
    for hit in hits:
        node = hit.node
        if node is None:
            continue
        chosen = choose(node)
        if not chosen:
            continue
        hit.base_score = hit.score
        hit.score, hit.contributions = rescore(node, hit.score, chosen, feedback)
    order = {id(h): i for i, h in enumerate(hits)}
    hits.sort(key=lambda h: (-h.score, order[id(h)]))


def _one(
    modifier: Modifier, node: NodeRecord, feedback: Callable[[str], NodeFeedback | None]
) -> Contribution:
    raw = _input(modifier, node, feedback)
    if raw is None:
        raw = modifier.missing
    if raw is None:
        neutral = 1.0 if modifier.op is Op.MULTIPLY else 0.0
        return Contribution(modifier.label, modifier.op, 0.0, neutral, skipped=True)
    term = modifier.weight * (raw - modifier.center)
    if modifier.op is Op.MULTIPLY:
        effect = _clamp(1.0 + term, 0.0 if modifier.low is None else modifier.low, modifier.high)
        neutral = 1.0
    else:
        effect = _clamp(term, modifier.low, modifier.high)
        neutral = 0.0
    if not math.isfinite(effect):  # an overflow of huge weights and inputs
        return Contribution(modifier.label, modifier.op, raw, neutral, skipped=True)
    return Contribution(modifier.label, modifier.op, raw, effect)


def _input(
    modifier: Modifier, node: NodeRecord, feedback: Callable[[str], NodeFeedback | None]
) -> float | None:
    if modifier.source is Source.TAG:
        return 1.0 if modifier.key in node.tags else 0.0
    if modifier.source is Source.FEEDBACK:
        found = feedback(node.id)
        return None if found is None else found.signal(modifier.key)
    value = lookup(node.metadata, modifier.key)
    if modifier.source is Source.METADATA_CONTAINS:
        if isinstance(value, list):
            return 1.0 if any(_same(v, modifier.value) for v in value) else 0.0
        return 1.0 if value is not None and _same(value, modifier.value) else 0.0
    return _number(value)


def lookup(metadata: Mapping[str, Any], key: str) -> Any:
    """The value at a dotted path (an exact top-level key first), or None."""
    if key in metadata:
        return metadata[key]
    current: Any = metadata
    for part in key.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return None
        current = current[part]
    return current


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _same(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return float(left) == float(right)
    return bool(left == right)


def _clamp(value: float, low: float | None, high: float | None) -> float:
    if low is not None and value < low:
        value = low
    if high is not None and value > high:
        value = high
    return value


@dataclass(frozen=True)
class Rescoring:
    """Score modifiers' defaults per content type (``*``: any), how many candidates a
    query with modifiers re-ranks, and where the nodes' feedback comes from."""

    defaults: Mapping[str, Sequence[Modifier]] = field(default_factory=dict)
    candidates: int = 100
    feedback: FeedbackService | None = None

    def chooser(
        self, given: Sequence[Modifier], use_defaults: bool
    ) -> Callable[[NodeRecord], Sequence[Modifier]] | None:
        """Which modifiers each node gets: the request's, else its content type's
        defaults; None when no node can get any."""
        if given:
            chosen = tuple(given)
            return lambda node: chosen
        if use_defaults and self.defaults:
            return defaults_for(self.defaults)
        return None

    async def feedback_of(
        self,
        tenant: str,
        nodes: Sequence[NodeRecord],
        chooser: Callable[[NodeRecord], Sequence[Modifier]],
    ) -> dict[str, NodeFeedback]:
        """The feedback of ``nodes`` when a modifier chosen for one of them reads it."""
        wanted = any(m.uses_feedback for n in nodes for m in chooser(n))
        if not wanted or self.feedback is None:
            return {}
        return await self.feedback.of_nodes(tenant, [n.id for n in nodes])


def defaults_for(
    table: Mapping[str, Sequence[Modifier]],
) -> Callable[[NodeRecord], Sequence[Modifier]]:
    """A chooser giving each node the modifiers of its content type (``*``: any type)."""
    fallback = tuple(table.get("*", ()))

    def choose(node: NodeRecord) -> Sequence[Modifier]:
        return tuple(table.get(node.content_type, fallback))

    return choose


def check_defaults(table: Mapping[str, Sequence[Modifier]]) -> None:
    """ValueError for a content type key that is neither ``*`` nor a valid content type,
    or a modifier that cannot apply (startup configuration)."""
    for content_type, modifiers in table.items():
        if content_type != "*" and not _CONTENT_TYPE.match(content_type):
            raise ValueError(f"score modifiers: {content_type!r} is not a content type")
        try:
            check(modifiers, f"score modifiers[{content_type}]")
        except InvalidArgument as exc:
            raise ValueError(str(exc)) from exc
