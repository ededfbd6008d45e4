"""JetStream implementation of :class:`semantic.core.pipeline.EventPipeline`: the durable
consumers' info, and the dead-letter stream read by sequence, republished and deleted
(as README_vector.md "Retries and dead letters" does with nats-py).

Any broker error or timeout is DependencyUnavailable (UNAVAILABLE): the caller may retry.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TypeVar

import nats.errors
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError

from semantic.common.errors import DependencyUnavailable
from semantic.core.pipeline import ConsumerBacklog, DeadLetter, DeadLetterPage, PipelineState
from semantic.store.nats.connection import BackgroundConnection
from semantic.store.nats.settings import EventStreamSettings

_T = TypeVar("_T")
REASON = "Semantic-Dlq-Reason"
DETAIL = "Semantic-Dlq-Detail"
ORIGINAL_SUBJECT = "Semantic-Original-Subject"
DELIVERIES = "Semantic-Deliveries"
CONTENT_TYPE = "Content-Type"


@dataclass(frozen=True)
class StreamNames:
    """The streams and durable consumers the pipeline reads."""

    stream: str
    dlq_stream: str
    consumers: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: EventStreamSettings) -> StreamNames:
        """The names the indexer uses."""
        return cls(
            settings.indexer_stream,
            settings.indexer_dlq_stream,
            (settings.indexer_consumer, settings.indexer_user_consumer),
        )


class JetStreamPipeline:
    """The event pipeline on a (background) NATS connection."""

    def __init__(
        self, connection: BackgroundConnection, names: StreamNames, *, timeout_s: float
    ) -> None:
        self._connection = connection
        self._names = names
        self._timeout_s = timeout_s

    async def state(self) -> PipelineState:
        """Each durable consumer's backlog (missing ones left out) and the DLQ count."""
        js = self._js()
        consumers = []
        for name in self._names.consumers:
            try:
                info = await _call(partial(js.consumer_info, self._names.stream, name))
            except _Missing:
                continue
            consumers.append(
                ConsumerBacklog(
                    name=name,
                    pending=info.num_pending or 0,
                    ack_pending=info.num_ack_pending or 0,
                    redelivered=info.num_redelivered or 0,
                )
            )
        dlq = await self._dlq_state(js)
        return PipelineState(
            consumers=consumers,
            dead_letters=(dlq.messages or 0) if dlq else 0,
            server=self._connection.status()[1],
        )

    async def newest(self, limit: int, before_seq: int, reason: str) -> DeadLetterPage:
        """Walk the DLQ stream down from ``before_seq - 1`` (or its last sequence)."""
        js = self._js()
        dlq = await self._dlq_state(js)
        if dlq is None or not dlq.messages:
            return DeadLetterPage([], 0)
        top = dlq.last_seq if not before_seq else min(dlq.last_seq, before_seq - 1)
        letters: list[DeadLetter] = []
        seq = top
        while seq >= dlq.first_seq and len(letters) < limit:
            letter = await self._get(js, seq)
            seq -= 1
            if letter is not None and (not reason or letter.reason == reason):
                letters.append(letter)
        return DeadLetterPage(letters, dlq.messages)

    async def oldest(self, reason: str) -> AsyncIterator[DeadLetter]:
        """The letters present now, oldest first (later ones are left for another call)."""
        js = self._js()
        dlq = await self._dlq_state(js)
        if dlq is None or not dlq.messages:
            return
        for seq in range(dlq.first_seq, dlq.last_seq + 1):
            letter = await self._get(js, seq)
            if letter is not None and (not reason or letter.reason == reason):
                yield letter

    async def letter(self, seq: int) -> DeadLetter | None:
        """One letter by sequence."""
        return await self._get(self._js(), seq)

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        """Publish on JetStream and wait for the broker's ack."""
        js = self._js()
        await _call(lambda: js.publish(subject, payload, headers=headers))

    async def delete(self, seq: int) -> bool:
        """Delete one letter; False when it was already gone."""
        js = self._js()
        try:
            return bool(await _call(lambda: js.delete_msg(self._names.dlq_stream, seq)))
        except _Missing:
            return False

    def _js(self) -> JetStreamContext:
        return self._connection.jetstream(self._timeout_s)

    async def _dlq_state(self, js: JetStreamContext) -> js_api.StreamState | None:
        try:
            info = await _call(lambda: js.stream_info(self._names.dlq_stream))
        except _Missing:
            return None
        return info.state

    async def _get(self, js: JetStreamContext, seq: int) -> DeadLetter | None:
        try:
            raw = await _call(lambda: js.get_msg(self._names.dlq_stream, seq))
        except _Missing:
            return None
        return _letter(raw, seq)


class _Missing(Exception):
    """The stream, consumer or message does not exist."""


async def _call(operation: Callable[[], Awaitable[_T]]) -> _T:
    """Run one JetStream request; missing things are _Missing, failures unavailability."""
    try:
        return await operation()
    except NotFoundError as exc:
        raise _Missing from exc
    except (nats.errors.Error, TimeoutError, OSError) as exc:
        raise DependencyUnavailable("nats", f"{type(exc).__name__}: {exc}") from exc


def _letter(raw: js_api.RawStreamMsg, seq: int) -> DeadLetter:
    headers = {k.lower(): v for k, v in (raw.headers or {}).items()}
    try:
        deliveries = int(headers.get(DELIVERIES.lower(), "0"))
    except ValueError:
        deliveries = 0
    return DeadLetter(
        seq=raw.seq or seq,
        time=raw.time or datetime.fromtimestamp(0, UTC),
        subject=raw.subject or "",
        original_subject=headers.get(ORIGINAL_SUBJECT.lower(), ""),
        reason=headers.get(REASON.lower(), ""),
        detail=headers.get(DETAIL.lower(), ""),
        deliveries=deliveries,
        content_type=headers.get(CONTENT_TYPE.lower(), ""),
        payload=raw.data or b"",
    )
