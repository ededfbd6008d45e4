"""User events off NATS (``semantic.user.<tenant>``): decoded and validated like
Search.Track's, recorded through the same tracker, one transaction per batch. An event
whose node is not indexed yet is retried with a delay (the node may still be on its way)
and dead-lettered after max_deliver."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from nats.aio.msg import Msg

from semantic.core.recommend.events import UserEventRecord
from semantic.core.recommend.tracker import Tracker
from semantic.core.spaces import ActiveSpaces
from semantic.indexer.consumer import Applied
from semantic.indexer.events import USER_PREFIX, decode_tenant_event, validating
from semantic.v1 import events_pb2
from semantic.wire.recommend import user_event_from_proto


class UserEventHandler:
    """UserEvents -> the tracker (journeys, engagement, archetypes)."""

    kind = "user"

    def __init__(self, spaces: ActiveSpaces, tracker: Tracker, *, max_bytes: int) -> None:
        self._spaces = spaces
        self._tracker = tracker
        self._max_bytes = max_bytes

    def decode(self, msg: Msg) -> UserEventRecord:
        """A validated UserEventRecord; Poison naming the reason otherwise."""
        event = events_pb2.UserEvent()
        decode_tenant_event(
            msg.subject, msg.headers, msg.data, event, prefix=USER_PREFIX, max_bytes=self._max_bytes
        )
        with validating(msg.subject, strip="event."):
            return user_event_from_proto(
                event, "event", event.tenant, datetime.now(UTC), self._tracker.config
            )

    async def apply(self, items: list[Any]) -> Applied:
        """Track the batch; events of unknown nodes are handed back for a later retry."""
        space = await self._spaces.space()
        result = await self._tracker.track(space, items)
        applied = Applied()
        applied.outcomes["tracked"] += result.accepted
        applied.outcomes["duplicate"] += result.duplicates
        for index in result.unknown:
            applied.retry[index] = f"node {items[index].node_id or items[index].slug!r} is unknown"
        return applied
