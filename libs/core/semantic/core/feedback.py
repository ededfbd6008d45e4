"""Feedback on nodes: reports that a node was applied and whether it worked, the counters
kept per node, and the success rate and confidence derived from them (README_vector.md,
"Feedback and confidence").

With ``s`` successes out of ``n`` reports and a Beta(a, b) prior (settings, default 1, 1):

- ``success_rate`` = (s + a) / (n + a + b), the posterior mean: 0.5 for a node never
  applied, moving toward the observed rate as reports come in;
- ``confidence`` = max(0, success_rate - sd), sd = sqrt(m (1 - m) / (n + a + b + 1)) with
  m the success rate: the posterior's mean minus one standard deviation, so ten successes
  out of ten (0.92 - 0.08 = 0.84) rank above one out of one (0.67 - 0.24 = 0.43).

Reports are idempotent per (tenant, feedback_id); one naming an unknown node is not recorded
but reported back (on NATS: retried, the node may still be on its way).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

MAX_MINUTES = 525_600.0
"""|minutes_saved| at most one year."""
MAX_NOTE_CHARS = 2_000
MAX_ITEMS = 500


@dataclass(frozen=True)
class Prior:
    """The Beta prior of the success rate: ``a`` successes and ``b`` failures assumed."""

    a: float = 1.0
    b: float = 1.0


@dataclass(frozen=True)
class FeedbackRecord:
    """One validated report (node by id or slug; resolved before writing)."""

    feedback_id: str
    tenant: str
    node_id: str
    slug: str
    success: bool
    occurred_at: datetime
    minutes_saved: float | None = None
    note: str = ""
    reporter: str = ""


@dataclass(frozen=True)
class Counters:
    """A node's stored counters."""

    applied: int = 0
    succeeded: int = 0
    minutes_total: float = 0.0
    minutes_reports: int = 0
    last_applied_at: datetime | None = None


@dataclass(frozen=True)
class NodeFeedback:
    """A node's counters with the derived values."""

    applied: int
    succeeded: int
    failed: int
    success_rate: float
    confidence: float
    avg_minutes_saved: float | None
    last_applied_at: datetime | None

    def signal(self, name: str) -> float | None:
        """A value by its modifier name (``success_rate``, ``confidence``, ``applied``,
        ``avg_minutes_saved``); None when missing."""
        value = {
            "success_rate": self.success_rate,
            "confidence": self.confidence,
            "applied": float(self.applied),
            "avg_minutes_saved": self.avg_minutes_saved,
        }[name]
        return value


def derive(counters: Counters, prior: Prior) -> NodeFeedback:
    """Counters with the success rate and confidence (module doc)."""
    n, s = counters.applied, counters.succeeded
    total = n + prior.a + prior.b
    rate = (s + prior.a) / total
    sd = math.sqrt(rate * (1.0 - rate) / (total + 1.0))
    average = (
        counters.minutes_total / counters.minutes_reports if counters.minutes_reports else None
    )
    return NodeFeedback(
        applied=n,
        succeeded=s,
        failed=n - s,
        success_rate=rate,
        confidence=max(0.0, rate - sd),
        avg_minutes_saved=average,
        last_applied_at=counters.last_applied_at,
    )


@dataclass
class FeedbackResult:
    """What one Feedback call did."""

    recorded: int = 0
    duplicates: int = 0
    unknown: list[int] = field(default_factory=list)
    feedback: dict[str, NodeFeedback] = field(default_factory=dict)


class FeedbackStore(Protocol):
    """Reports and counters (PostgreSQL provides it)."""

    async def record(
        self, items: Sequence[FeedbackRecord]
    ) -> tuple[list[int], list[int], list[int], dict[tuple[str, str], Counters]]:
        """Record the reports in one transaction: indexes recorded, duplicates and naming
        unknown nodes, and the counters of the nodes recorded afterwards."""
        ...

    async def counters(self, tenant: str, ids: Sequence[str]) -> dict[str, Counters]:
        """Stored counters of these nodes (absent: never applied)."""
        ...


class FeedbackService:
    """Feedback in, counters and derived values out."""

    def __init__(self, store: FeedbackStore, prior: Prior) -> None:
        self._store = store
        self._prior = prior

    @property
    def prior(self) -> Prior:
        """The prior in use."""
        return self._prior

    async def record(self, items: Sequence[FeedbackRecord]) -> FeedbackResult:
        """Record the reports (one transaction)."""
        recorded, duplicates, unknown, counters = await self._store.record(items)
        return FeedbackResult(
            recorded=len(recorded),
            duplicates=len(duplicates),
            unknown=unknown,
            feedback={node_id: derive(c, self._prior) for (_, node_id), c in counters.items()},
        )

    async def of_nodes(self, tenant: str, ids: Sequence[str]) -> dict[str, NodeFeedback]:
        """Every node's feedback (the prior's values for nodes never applied)."""
        if not ids:
            return {}
        stored = await self._store.counters(tenant, list(dict.fromkeys(ids)))
        return {i: derive(stored.get(i, Counters()), self._prior) for i in ids}


def by_node(values: Mapping[str, NodeFeedback], node_id: str, prior: Prior) -> NodeFeedback:
    """``values[node_id]``, or the prior's values."""
    found = values.get(node_id)
    return found if found is not None else derive(Counters(), prior)
