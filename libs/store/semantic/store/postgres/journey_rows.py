"""The rows a journey is read from: a user's stored row and the user-event log."""

from __future__ import annotations

from typing import Any

import asyncpg
import numpy as np

from semantic.core.recommend.events import Action
from semantic.core.recommend.journey import LoggedEvent, StoredUser
from semantic.store.postgres.db import utc

USER_COLUMNS = (
    "u.archetype, u.archetype_source, u.space_id, u.journey_sum, u.journey_weight,"
    " u.journey_at, u.events"
)
"""The columns of ``semantic.users u`` :func:`stored_user` reads."""


def stored_user(row: Any) -> StoredUser:
    """A StoredUser from a row holding :data:`USER_COLUMNS`."""
    journey = row["journey_sum"]
    return StoredUser(
        archetype=row["archetype"],
        archetype_source=row["archetype_source"],
        space_id=row["space_id"],
        journey_sum=np.asarray(journey, np.float64) if journey is not None else None,
        journey_weight=float(row["journey_weight"] or 0.0),
        journey_at=row["journey_at"],
        events=int(row["events"] or 0),
    )


async def logged_events(
    conn: asyncpg.Connection, tenant: str, user_id: str, limit: int
) -> list[LoggedEvent]:
    """The user's ``limit`` latest logged events, newest first."""
    rows = await conn.fetch(
        "SELECT event_id, node_id, action, weight, occurred_at FROM semantic.user_events"
        " WHERE tenant = $1 AND user_id = $2 ORDER BY occurred_at DESC LIMIT $3",
        tenant,
        user_id,
        limit,
    )
    return [
        LoggedEvent(
            r["event_id"], r["node_id"], Action(r["action"]), r["weight"], utc(r["occurred_at"])
        )
        for r in rows
    ]
