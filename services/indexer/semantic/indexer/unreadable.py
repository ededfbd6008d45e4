"""Messages this replica's NATS client can never read: dead-lettered from the stream itself.

NATS accepts a subject token holding a vertical tab or a form feed, and stores and delivers
the message, but the Python client's protocol parser reads those bytes as separators and
never hands the delivery to the consumer loop. Such a message is neither acked nor naked:
JetStream redelivers it every ack wait, forever, and the consumer's ack floor stops at it.

A :class:`UnreadableSweeper` per durable consumer watches the ack floor. When it has not
moved for a whole interval while deliveries are pending, the messages just above it are
read by sequence (the stream's get API carries the subject in JSON, which the client
reads fine); each whose subject the client cannot parse is published to the dead-letter
subject (reason ``invalid``) and deleted from the stream, which settles it for the
consumer. Replicas may race on one message: the dead letter's ``Nats-Msg-Id`` lets
JetStream drop the second copy, and a second delete finds nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import re

import structlog
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from semantic.indexer.events import DLQ_PREFIX

log = structlog.get_logger(__name__)

UNREADABLE = re.compile(r"[\x00-\x1f\x7f]")
"""Bytes the client's parser splits on (or that no valid subject holds)."""
PEEK = 16
"""Sequences above the ack floor looked at per sweep."""


def readable(subject: str) -> bool:
    """Whether the NATS client can parse a delivery on ``subject``."""
    return UNREADABLE.search(subject) is None


def dead_letter_subject(subject: str) -> str:
    """The dead-letter subject of ``subject``: ``semantic.dlq.<rest>``, unreadable bytes as
    ``_`` (so the dead letter itself can be read)."""
    rest = subject.split(".", 1)[1] if "." in subject else subject
    return f"{DLQ_PREFIX}.{UNREADABLE.sub('_', rest)}"


class UnreadableSweeper:
    """Finds and dead-letters the unreadable messages holding up one durable consumer."""

    def __init__(
        self, js: JetStreamContext, stream: str, dlq_stream: str, consumer: str, interval_s: float
    ) -> None:
        self._js = js
        self._stream = stream
        self._dlq_stream = dlq_stream
        self._consumer = consumer
        self._interval_s = interval_s
        self._floor: int | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep every interval until ``stop``."""
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval_s)
            if stop.is_set():
                return
            try:
                await self.sweep()
            except Exception as exc:  # the next sweep tries again; never fatal
                log.warning("unreadable_sweep_failed", error=f"{type(exc).__name__}: {exc}")

    async def sweep(self) -> int:
        """One look at the ack floor; the number of messages dead-lettered."""
        info = await self._js.consumer_info(self._stream, self._consumer)
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        delivered = info.delivered.stream_seq if info.delivered else 0
        stuck = floor == self._floor and (info.num_ack_pending or 0) > 0
        self._floor = floor
        if not stuck or floor is None or delivered is None:
            return 0
        swept = 0
        for seq in range(floor + 1, min(delivered, floor + PEEK) + 1):
            try:
                msg = await self._js.get_msg(self._stream, seq)
            except NotFoundError:
                continue
            if msg.subject is None or readable(msg.subject):
                continue
            await self._dead_letter(seq, msg.subject, msg.data or b"", dict(msg.headers or {}))
            swept += 1
        return swept

    async def _dead_letter(
        self, seq: int, subject: str, data: bytes, original: dict[str, str]
    ) -> None:
        msg_id = original.get("Nats-Msg-Id") or f"{self._stream}:{seq}"
        headers = {
            "Semantic-Dlq-Reason": "invalid",
            "Semantic-Dlq-Detail": f"subject: holds a control character ({subject!r}); "
            "NATS clients cannot read such a subject",
            "Semantic-Original-Subject": UNREADABLE.sub("_", subject),
            "Nats-Msg-Id": f"dlq:{UNREADABLE.sub('_', msg_id)}",
        }
        await self._js.publish(
            dead_letter_subject(subject), data, stream=self._dlq_stream, headers=headers
        )
        with contextlib.suppress(NotFoundError):
            await self._js.delete_msg(self._stream, seq)
        log.warning("dead_lettered", subject=repr(subject), reason="invalid", seq=seq)
