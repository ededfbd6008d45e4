"""Feedback events off NATS (``semantic.feedback.<tenant>``): decoded and validated like
Search.Feedback's, recorded through the same feedback service, one transaction per batch.
A report whose node is not indexed yet is retried with a delay (the node may still be on
its way) and dead-lettered after max_deliver; a report already recorded counts once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from nats.aio.msg import Msg

from semantic.core.feedback import FeedbackRecord, FeedbackService
from semantic.indexer.consumer import Applied
from semantic.indexer.events import FEEDBACK_PREFIX, Poison, decode_tenant_event, validating
from semantic.v1 import events_pb2
from semantic.wire.feedback import feedback_item_from_proto


class FeedbackEventHandler:
    """FeedbackEvents -> the nodes' feedback counters."""

    kind = "feedback"

    def __init__(self, service: FeedbackService, *, max_bytes: int) -> None:
        self._service = service
        self._max_bytes = max_bytes

    def decode(self, msg: Msg) -> FeedbackRecord:
        """A validated FeedbackRecord; Poison naming the reason otherwise."""
        event = events_pb2.FeedbackEvent()
        decode_tenant_event(
            msg.subject,
            msg.headers,
            msg.data,
            event,
            prefix=FEEDBACK_PREFIX,
            max_bytes=self._max_bytes,
        )
        with validating(msg.subject, strip="event."):
            if not event.HasField("item"):
                raise Poison("invalid", "item: is required")
            return feedback_item_from_proto(
                event.item, "event.item", event.tenant, datetime.now(UTC)
            )

    async def apply(self, items: list[Any]) -> Applied:
        """Record the batch; reports of unknown nodes are handed back for a later retry."""
        result = await self._service.record(items)
        applied = Applied()
        applied.outcomes["recorded"] += result.recorded
        applied.outcomes["duplicate"] += result.duplicates
        for index in result.unknown:
            node = items[index].node_id or items[index].slug
            applied.retry[index] = f"node {node!r} is unknown"
        return applied
