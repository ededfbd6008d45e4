"""The consumer loop: fetch a batch, decode, apply in one transaction, then ack.

How each event ends (ack, nak with a growing delay, dead letter then term, or a failed
batch retried event by event) is decided in ``semantic.indexer.outcome``; this module
says which failures mean a dependency is down (embedder, PostgreSQL, overloaded, the
database lost, emptied or replaced) and carries the decision out on the messages.

While a batch is being applied, every message gets a progress signal each third of the
ack wait, so a slow batch is never redelivered to another replica (no double work). On
shutdown the current batch gets the grace period to finish; what is still in flight
after it is nak'ed for immediate redelivery.

While the database is being recovered (a :class:`Gate`, the database guardian, says
so) the loop fetches nothing: events are not delivered again and again during an outage,
so however long it lasts, their delivery count does not grow.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter as CounterType
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import nats.errors
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from semantic.common.errors import DependencyUnavailable, FailedPrecondition, Overloaded
from semantic.common.retry import is_transient
from semantic.indexer import metrics
from semantic.indexer.batching import Decoded as _Decoded
from semantic.indexer.batching import heavy_last
from semantic.indexer.events import (
    CONTENT_PREFIX,
    DLQ_PREFIX,
    ContentChange,
    Poison,
    decode_content,
)
from semantic.indexer.outcome import (
    Ack,
    DeadLetter,
    Failure,
    Isolate,
    Nak,
    Outcome,
    RetryLater,
    RetryPolicy,
    attempts,
    dead_letter_headers,
    settle,
)
from semantic.indexer.processor import ChangeProcessor
from semantic.indexer.streams import Topology
from semantic.store.postgres.db import outage_of
from semantic.wire import convert

log = structlog.get_logger(__name__)

REPAIR_AFTER = 3
"""Fetches failing in a row before a consumer loop makes its stream and consumer again."""


def dependency_down(exc: BaseException) -> bool:
    """A failure caused by an unavailable dependency, not by the events."""
    if isinstance(exc, DependencyUnavailable | Overloaded | FailedPrecondition):
        return True  # FailedPrecondition: no active space yet, model not served, contention
    # outage_of: a driver error saying the database is lost, busy or replaced (the store's
    # one list of such errors)
    return is_transient(exc) or outage_of(exc) is not None


class Gate(Protocol):
    """Whether a dependency serves; the loop fetches only while it does."""

    @property
    def available(self) -> bool:
        """True while the dependency serves."""

    async def wait_available(self) -> None:
        """Return once the dependency serves."""


@dataclass(frozen=True)
class ConsumerConfig:
    """Knobs of the loop (the values come from settings)."""

    batch_size: int
    ack_wait_s: float
    max_deliver: int
    retry_initial_s: float
    retry_max_s: float
    max_event_bytes: int
    limits: convert.Limits
    fetch_timeout_s: float = 1.0
    heavy_event_bytes: int | None = None
    """Content events this large go after the rest of their batch, each alone
    (:func:`_heavy_last`); None: batches apply as fetched."""

    @property
    def retry(self) -> RetryPolicy:
        """Redelivery delays and attempts."""
        return RetryPolicy(self.max_deliver, self.retry_initial_s, self.retry_max_s)


@dataclass
class Applied:
    """What a handler did with a batch: outcome counts, and the items (by index) that
    failed for their own reason and must be retried later (with that reason)."""

    outcomes: CounterType[str] = field(default_factory=CounterType)
    retry: dict[int, str] = field(default_factory=dict)


class Handler(Protocol):
    """One kind of event: how to decode a message and apply a batch of them."""

    kind: str

    def decode(self, msg: Msg) -> Any:
        """The validated item; raises Poison."""

    async def apply(self, items: list[Any]) -> Applied:
        """Apply every item in one go; raises on failure (nothing applied)."""


class ContentHandler:
    """ContentEvents -> ChangeProcessor (one transaction per batch, or per segment of it:
    processor.segments)."""

    kind = "content"

    def __init__(self, processor: ChangeProcessor, config: ConsumerConfig) -> None:
        self._processor = processor
        self._config = config

    def decode(self, msg: Msg) -> ContentChange:
        if not msg.subject.startswith(CONTENT_PREFIX + "."):
            raise Poison("invalid", f"subject {msg.subject!r} is not a content subject")
        return decode_content(
            msg.subject,
            msg.headers,
            msg.data,
            max_bytes=self._config.max_event_bytes,
            limits=self._config.limits,
        )

    async def apply(self, items: list[Any]) -> Applied:
        outcome = await self._processor.apply(items)
        applied = Applied(outcome.outcomes)
        if outcome.superseded:
            applied.outcomes["superseded"] += outcome.superseded
        return applied


class ContentConsumer:
    """One replica's loop over one shared durable consumer (content or user events)."""

    def __init__(
        self,
        js: JetStreamContext,
        topology: Topology,
        processor: ChangeProcessor | Handler,
        config: ConsumerConfig,
        *,
        consumer: str | None = None,
        gate: Gate | None = None,
        repair: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """``repair``: makes the streams and consumers again (``streams.ensure_topology``),
        called after ``REPAIR_AFTER`` fetches in a row failed (NATS restarted without its
        JetStream data: the stream and the durable consumer are gone)."""
        self._js = js
        self._gate = gate
        self._repair = repair
        self._topology = topology
        self._handler: Handler = (
            ContentHandler(processor, config)
            if isinstance(processor, ChangeProcessor)
            else processor
        )
        self._consumer = consumer or topology.consumer
        self._config = config
        self._inflight: list[Msg] = []
        self._outage_delay = 0.0
        self._outage_naks: dict[int, int] = {}  # stream sequence -> naks for outages

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch and handle batches until ``stop`` is set."""
        subscription = await self._js.pull_subscribe_bind(
            durable=self._consumer, stream=self._topology.stream
        )
        log.info("consuming", stream=self._topology.stream, consumer=self._consumer)
        failed = 0
        try:
            while not stop.is_set():
                if self._gate is not None and not self._gate.available:
                    await self._paused(stop)
                    continue
                try:
                    messages = await subscription.fetch(
                        self._config.batch_size, timeout=self._config.fetch_timeout_s
                    )
                except TimeoutError:
                    failed = 0
                    continue
                except (nats.errors.Error, OSError) as exc:
                    failed += 1
                    log.warning("fetch_failed", error=f"{type(exc).__name__}: {exc}")
                    if failed >= REPAIR_AFTER and self._repair is not None:
                        subscription = await self._repaired(subscription)
                        failed = 0
                    await _sleep_unless(stop, 1.0)
                    continue
                failed = 0
                try:
                    await self.handle(messages)
                except Exception:  # unsettled events come back after their ack wait
                    log.exception("batch_handling_failed", consumer=self._consumer)
                    await _sleep_unless(stop, 1.0)
                    continue
                gate_open = self._gate is None or self._gate.available
                if self._outage_delay and gate_open:  # a closed gate pauses the loop itself
                    await _sleep_unless(stop, self._outage_delay)
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def _repaired(self, subscription: Any) -> Any:
        """The streams and consumers made again where missing, and a new subscription to
        this consumer; the old subscription when that fails (NATS still away)."""
        assert self._repair is not None
        try:
            await self._repair()
            fresh = await self._js.pull_subscribe_bind(
                durable=self._consumer, stream=self._topology.stream
            )
        except Exception as exc:  # retried after the next failed fetches
            log.warning("topology_repair_failed", error=f"{type(exc).__name__}: {exc}")
            return subscription
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()
        log.info("topology_repaired", stream=self._topology.stream, consumer=self._consumer)
        return fresh

    async def _paused(self, stop: asyncio.Event) -> None:
        """Fetch nothing until the gate opens (or ``stop``)."""
        assert self._gate is not None
        log.info("consumer_paused", consumer=self._consumer, reason="database unavailable")
        waiters = {
            asyncio.ensure_future(self._gate.wait_available()),
            asyncio.ensure_future(stop.wait()),
        }
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        self._outage_delay = 0.0
        log.info("consumer_resumed", consumer=self._consumer)

    async def handle(self, messages: Sequence[Msg]) -> None:
        """Decode, apply and settle one fetched batch."""
        self._inflight = list(messages)
        try:
            valid: list[_Decoded] = []
            for msg in messages:
                try:
                    valid.append(_Decoded(msg, self._handler.decode(msg)))
                except Poison as poison:
                    failure = Failure.poison(poison.reason, poison.detail)
                    poisoned = [_Decoded(msg, None)]
                    await self._carry_out(poisoned, self._decide(poisoned, failure), failure)
                except Exception as exc:  # a decoder bug: the event goes aside, the loop lives
                    log.exception("decode_failed", consumer=self._consumer)
                    failure = Failure.poison("decode_error", f"{type(exc).__name__}: {exc}")
                    poisoned = [_Decoded(msg, None)]
                    await self._carry_out(poisoned, self._decide(poisoned, failure), failure)
            light, heavy = heavy_last(valid, self._config.heavy_event_bytes)
            if light:
                await self._apply(light)
            for item in heavy:
                await self._apply([item])
        except asyncio.CancelledError:
            await self._return_inflight()
            raise
        finally:
            self._inflight = []

    async def _apply(self, batch: list[_Decoded]) -> None:
        try:
            await self._apply_batch(batch)
        except Exception as exc:
            failure = _failure(exc)
            outcome = self._decide(batch, failure)
            if not isinstance(outcome, Isolate):
                await self._carry_out(batch, outcome, failure)
                return
            log.warning("batch_failed_isolating", events=len(batch), error=str(exc))
            for index, item in enumerate(batch):  # find the event(s) at fault, apply the rest
                try:
                    await self._apply_batch([item])
                except Exception as one:
                    failure = _failure(one)
                    outcome = self._decide([item], failure)
                    if isinstance(outcome, Nak) and outcome.outage:  # the rest waits too
                        rest = batch[index:]
                        await self._carry_out(rest, self._decide(rest, failure), failure)
                        return
                    await self._carry_out([item], outcome, failure)

    def _decide(self, batch: list[_Decoded], failure: Failure | None) -> Outcome:
        """The outcome of ``batch`` (one event, or a batch failing as a whole)."""
        return settle(
            failure,
            deliveries=max(_deliveries(i.msg) for i in batch),
            outage_naks=self._outage_naks_of(batch[0].msg) if len(batch) == 1 else 0,
            batch_size=len(batch),
            policy=self._config.retry,
        )

    async def _carry_out(
        self, batch: list[_Decoded], outcome: Outcome, failure: Failure | None
    ) -> None:
        """Settle the messages of ``batch`` as ``outcome`` says (never Isolate)."""
        error = failure.detail if failure is not None else ""
        match outcome:
            case Ack():
                for item in batch:
                    await item.msg.ack()
                    self._forget(item.msg)
            case Nak(delay_s=delay, outage=True):
                await self._retry_later(batch, delay, error)
            case Nak(delay_s=delay):
                for item in batch:
                    await self._nak_event(item, delay, error)
            case DeadLetter(reason=reason, detail=detail, fallback_delay_s=fallback):
                for item in batch:
                    self._forget(item.msg)
                    await self._dead_letter(item.msg, reason, detail, fallback)
            case Isolate():
                raise AssertionError("a batch to isolate is applied event by event")

    async def _apply_batch(self, batch: list[_Decoded]) -> None:
        started = time.perf_counter()
        heartbeat = asyncio.create_task(self._keep_alive([i.msg for i in batch]))
        try:
            applied = await self._handler.apply([i.item for i in batch])
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        now = datetime.now(UTC)
        for index, item in enumerate(batch):
            reason = applied.retry.get(index)
            failure = None if reason is None else _failure(RetryLater(reason))
            outcome = self._decide([item], failure)
            await self._carry_out([item], outcome, failure)
            if not isinstance(outcome, Ack):
                continue
            stamp = _published(item.msg) or getattr(item.item, "occurred_at", None)
            if stamp is not None:
                metrics.FRESHNESS.labels(self._handler.kind).observe(
                    max(0.0, (now - stamp).total_seconds())
                )
        metrics.APPLY_SECONDS.labels(self._handler.kind).observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.labels(self._handler.kind).observe(len(batch))
        for name, count in applied.outcomes.items():
            metrics.EVENTS.labels(self._handler.kind, name).inc(count)
        self._outage_delay = 0.0
        log.debug("batch_applied", kind=self._handler.kind, events=len(batch))

    async def _keep_alive(self, messages: list[Msg]) -> None:
        interval = max(self._config.ack_wait_s / 3, 0.5)
        while True:
            await asyncio.sleep(interval)
            for msg in messages:
                with contextlib.suppress(Exception):
                    await msg.in_progress()

    async def _retry_later(self, batch: list[_Decoded], delay: float, error: str) -> None:
        """A dependency is down: nak with a growing delay; the loop pauses as long."""
        self._outage_delay = delay
        metrics.RETRIES.labels("dependency").inc()
        log.warning("dependency_down_retrying", events=len(batch), delay_s=delay, error=error)
        for item in batch:
            sequence = _sequence(item.msg)
            if sequence is not None:
                if len(self._outage_naks) > 100_000:
                    self._outage_naks.clear()
                self._outage_naks[sequence] = self._outage_naks.get(sequence, 0) + 1
            with contextlib.suppress(Exception):
                await item.msg.nak(delay=delay)

    def _forget(self, msg: Msg) -> None:
        sequence = _sequence(msg)
        if sequence is not None:
            self._outage_naks.pop(sequence, None)

    def _outage_naks_of(self, msg: Msg) -> int:
        """Deliveries of ``msg`` that were outage retries seen by this replica."""
        sequence = _sequence(msg)
        return self._outage_naks.get(sequence, 0) if sequence is not None else 0

    async def _nak_event(self, item: _Decoded, delay: float, error: str) -> None:
        """The event itself failed and has attempts left: redeliver after ``delay``."""
        metrics.RETRIES.labels("event").inc()
        log.warning(
            "event_failed",
            event_id=getattr(item.item, "event_id", ""),
            deliveries=attempts(_deliveries(item.msg), self._outage_naks_of(item.msg)),
            error=error,
        )
        with contextlib.suppress(Exception):
            await item.msg.nak(delay=delay)

    async def _dead_letter(self, msg: Msg, reason: str, detail: str, fallback_s: float) -> None:
        """Publish the original payload with the reason to the DLQ subject, then term."""
        original = msg.subject
        rest = original.split(".", 1)[1] if "." in original else original
        origin = f"{self._topology.stream}:{_sequence(msg)}"
        headers = dead_letter_headers(
            original, msg.headers, reason, detail, _deliveries(msg), origin=origin
        )
        try:
            await self._js.publish(
                f"{DLQ_PREFIX}.{rest}", msg.data, stream=self._topology.dlq_stream, headers=headers
            )
        except Exception as exc:  # the DLQ is unreachable: keep the event, retry later
            log.warning("dead_letter_failed", subject=original, error=str(exc))
            with contextlib.suppress(Exception):
                await msg.nak(delay=fallback_s)
            return
        await msg.term()
        metrics.DEAD_LETTERS.labels(reason).inc()
        log.warning("dead_lettered", subject=original, reason=reason, detail=detail[:300])

    async def _return_inflight(self) -> None:
        for msg in self._inflight:
            if not msg.is_acked:
                with contextlib.suppress(Exception):
                    await msg.nak()

    async def report_lag(self) -> None:
        """Update the lag gauges from the consumer's info."""
        info = await self._js.consumer_info(self._topology.stream, self._consumer)
        metrics.LAG.labels(self._consumer).set(info.num_pending or 0)
        metrics.ACK_PENDING.labels(self._consumer).set(info.num_ack_pending or 0)


def _failure(exc: BaseException) -> Failure:
    return Failure.of(exc, dependency_down=dependency_down(exc))


def _sequence(msg: Msg) -> int | None:
    try:
        return int(msg.metadata.sequence.stream)
    except Exception:
        return None


def _deliveries(msg: Msg) -> int:
    try:
        return int(msg.metadata.num_delivered or 1)
    except Exception:
        return 1


def _published(msg: Msg) -> datetime | None:
    try:
        stamp = msg.metadata.timestamp
    except Exception:
        return None
    if stamp is None:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
