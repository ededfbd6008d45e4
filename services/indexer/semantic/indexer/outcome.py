"""How an event's attempt ends: the consumer's ack / nak / dead-letter decision, pure.

    applied                                  -> Ack
    poison (undecodable, invalid, too large) -> DeadLetter(reason), then term
    dependency down (any batch size)         -> Nak(delay for the deliveries, outage=True):
                                                the loop pauses as long, and the nak is not
                                                counted as an attempt of the event
    the event's own failure, batch of many   -> Isolate: apply the events one by one
    the event's own failure, alone           -> Nak(delay for the attempts), or
                                                DeadLetter("max_deliver") at the last one

A dead letter goes to the DLQ stream, then the event is term'ed; when the DLQ cannot be
reached, the event is nak'ed instead (``DeadLetter.fallback_delay_s``) and stays.

:func:`settle` decides; ``semantic.indexer.consumer`` classifies what happened (which
failures mean a dependency is down) and carries the decision out on the JetStream message.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass


class RetryLater(Exception):
    """An item a handler could not apply yet for its own reason (e.g. unknown node)."""


class Fault(enum.Enum):
    """Whose fault a failure is."""

    POISON = "poison"
    """The event can never be applied (undecodable, invalid, too large, wrong tenant)."""
    DEPENDENCY = "dependency"
    """A dependency is down (embedder, PostgreSQL, overload): not the event's fault."""
    EVENT = "event"
    """The event failed for its own reason; a later attempt may pass."""


@dataclass(frozen=True)
class Failure:
    """Why an attempt failed: whose fault, and the words for logs and dead letters."""

    fault: Fault
    detail: str
    reason: str = ""
    """The dead-letter reason of a poison event (``invalid``, ``too_large``...)."""

    @classmethod
    def poison(cls, reason: str, detail: str) -> Failure:
        """An event that can never be applied."""
        return cls(Fault.POISON, detail, reason)

    @classmethod
    def of(cls, exc: BaseException, *, dependency_down: bool) -> Failure:
        """A failure raised while applying: the dependency's fault or the event's."""
        detail = str(exc) if isinstance(exc, RetryLater) else f"{type(exc).__name__}: {exc}"
        return cls(Fault.DEPENDENCY if dependency_down else Fault.EVENT, detail)


@dataclass(frozen=True)
class RetryPolicy:
    """Redelivery delays and the attempts an event gets (from settings)."""

    max_deliver: int
    retry_initial_s: float
    retry_max_s: float

    def delay_for(self, attempt: int) -> float:
        """Growing redelivery delay: initial x 2^(attempt-1), capped at ``retry_max_s``."""
        exponent = min(max(attempt - 1, 0), 20)
        return float(min(self.retry_max_s, self.retry_initial_s * 2**exponent))


@dataclass(frozen=True)
class Ack:
    """Applied and committed: acknowledge."""


@dataclass(frozen=True)
class Nak:
    """Redeliver after ``delay_s``. ``outage``: a dependency is down, so the loop pauses
    as long and this delivery is not counted as an attempt of the event."""

    delay_s: float
    outage: bool = False


@dataclass(frozen=True)
class DeadLetter:
    """Publish to the DLQ with ``reason`` and ``detail``, then term; if the DLQ cannot be
    reached, nak after ``fallback_delay_s`` instead."""

    reason: str
    detail: str
    fallback_delay_s: float


@dataclass(frozen=True)
class Isolate:
    """A batch failed for an event's own reason: apply its events one by one to find it."""


Outcome = Ack | Nak | DeadLetter | Isolate


def attempts(deliveries: int, outage_naks: int) -> int:
    """Deliveries that count as attempts: outage naks do not (at least 1)."""
    return max(1, deliveries - outage_naks)


def settle(
    failure: Failure | None,
    *,
    deliveries: int,
    policy: RetryPolicy,
    outage_naks: int = 0,
    batch_size: int = 1,
) -> Outcome:
    """What to do with an event (or, for DEPENDENCY and ``batch_size`` > 1, a whole batch).

    ``deliveries``: JetStream's delivery count (for a batch, its largest); ``outage_naks``:
    how many of them were naks for an outage.
    """
    fallback = policy.delay_for(deliveries)
    if failure is None:
        return Ack()
    if failure.fault is Fault.POISON:
        return DeadLetter(failure.reason, failure.detail, fallback)
    if failure.fault is Fault.DEPENDENCY:
        return Nak(policy.delay_for(deliveries), outage=True)
    if batch_size > 1:
        return Isolate()
    attempt = attempts(deliveries, outage_naks)
    if attempt >= policy.max_deliver:
        return DeadLetter("max_deliver", failure.detail, fallback)
    return Nak(policy.delay_for(attempt))


def dead_letter_headers(
    subject: str,
    headers: Mapping[str, str] | None,
    reason: str,
    detail: str,
    deliveries: int,
    *,
    origin: str,
) -> dict[str, str]:
    """The headers of an event's dead letter: why, where it came from, how often it was
    delivered, and the original's content type and message id (prefixed ``dlq:``).

    ``origin`` (``<stream>:<sequence>``) stands in for a missing message id, so every
    dead letter has one: a replica killed between publishing it and terminating the event
    redelivers the event, and JetStream's duplicate window drops the second dead letter.
    """
    out = {
        "Semantic-Dlq-Reason": reason,
        "Semantic-Dlq-Detail": detail[:1024],
        "Semantic-Original-Subject": subject,
        "Semantic-Deliveries": str(deliveries),
    }
    if headers and "Content-Type" in headers:
        out["Content-Type"] = headers["Content-Type"]
    msg_id = headers.get("Nats-Msg-Id") if headers else None
    out["Nats-Msg-Id"] = f"dlq:{msg_id or origin}"
    return out
