"""Feedback in PostgreSQL (``semantic.feedback_events`` and ``semantic.node_feedback``,
migration 008): each report stored once per (tenant, feedback_id) and the node's counters
moved by the reports actually inserted, in one statement of one transaction, so a retried
or redelivered report never counts twice and concurrent reports of one node add up."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from semantic.core.feedback import Counters, FeedbackRecord
from semantic.store.postgres.db import connection

Key = tuple[str, str]

_RESOLVE = """
SELECT k.i, n.id FROM unnest($1::int[], $2::text[], $3::text[], $4::text[])
  AS k(i, tenant, node_id, slug)
JOIN semantic.nodes n ON n.tenant = k.tenant
  AND ((k.node_id <> '' AND n.id = k.node_id) OR (k.node_id = '' AND n.slug = k.slug))
"""
_RECORD = """
WITH added AS (
  INSERT INTO semantic.feedback_events AS f
    (tenant, feedback_id, node_id, success, minutes_saved, note, reporter, occurred_at)
  SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[], $5::float8[],
                       $6::text[], $7::text[], $8::timestamptz[])
  ORDER BY 1, 2
  ON CONFLICT (tenant, feedback_id) DO NOTHING
  RETURNING f.tenant, f.feedback_id, f.node_id, f.success, f.minutes_saved, f.occurred_at
), counted AS (
  INSERT INTO semantic.node_feedback AS c
    (tenant, node_id, applied, succeeded, minutes_total, minutes_reports, last_applied_at)
  SELECT tenant, node_id, count(*), count(*) FILTER (WHERE success),
         coalesce(sum(minutes_saved), 0), count(minutes_saved), max(occurred_at)
  FROM added GROUP BY tenant, node_id ORDER BY tenant, node_id
  ON CONFLICT (tenant, node_id) DO UPDATE SET
    applied = c.applied + EXCLUDED.applied,
    succeeded = c.succeeded + EXCLUDED.succeeded,
    minutes_total = c.minutes_total + EXCLUDED.minutes_total,
    minutes_reports = c.minutes_reports + EXCLUDED.minutes_reports,
    last_applied_at = greatest(c.last_applied_at, EXCLUDED.last_applied_at)
)
SELECT tenant, feedback_id FROM added
"""
_COUNTERS = """
SELECT tenant, node_id, applied, succeeded, minutes_total, minutes_reports, last_applied_at
FROM semantic.node_feedback
WHERE (tenant, node_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
"""


class PostgresFeedback:
    """The :class:`~semantic.core.feedback.FeedbackStore` on a pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(
        self, items: Sequence[FeedbackRecord]
    ) -> tuple[list[int], list[int], list[int], dict[Key, Counters]]:
        """Record the reports (module doc); indexes recorded, duplicate and unknown, and
        the counters of the nodes recorded."""
        async with connection(self._pool) as conn, conn.transaction():
            resolved = {
                r["i"]: r["id"]
                for r in await conn.fetch(
                    _RESOLVE,
                    list(range(len(items))),
                    [i.tenant for i in items],
                    [i.node_id for i in items],
                    [i.slug for i in items],
                )
            }
            unknown = [i for i in range(len(items)) if i not in resolved]
            known = [i for i in range(len(items)) if i in resolved]
            rows = await conn.fetch(
                _RECORD,
                [items[i].tenant for i in known],
                [items[i].feedback_id for i in known],
                [resolved[i] for i in known],
                [items[i].success for i in known],
                [items[i].minutes_saved for i in known],
                [items[i].note for i in known],
                [items[i].reporter for i in known],
                [items[i].occurred_at for i in known],
            )
            added = {(r["tenant"], r["feedback_id"]) for r in rows}
            recorded: list[int] = []
            duplicates: list[int] = []
            for i in known:  # the first of one id in the batch is the one inserted
                key = (items[i].tenant, items[i].feedback_id)
                (recorded if key in added else duplicates).append(i)
                added.discard(key)
            nodes = sorted({(items[i].tenant, resolved[i]) for i in recorded})
            counters = await _counters(conn, nodes)
        return recorded, duplicates, unknown, counters

    async def counters(self, tenant: str, ids: Sequence[str]) -> dict[str, Counters]:
        """Stored counters of these nodes."""
        async with connection(self._pool) as conn:
            found = await _counters(conn, [(tenant, i) for i in ids])
        return {node_id: c for (_, node_id), c in found.items()}


async def _counters(conn: asyncpg.Connection, keys: Sequence[Key]) -> dict[Key, Counters]:
    if not keys:
        return {}
    rows = await conn.fetch(_COUNTERS, [k[0] for k in keys], [k[1] for k in keys])
    return {
        (r["tenant"], r["node_id"]): Counters(
            applied=r["applied"],
            succeeded=r["succeeded"],
            minutes_total=r["minutes_total"],
            minutes_reports=r["minutes_reports"],
            last_applied_at=r["last_applied_at"],
        )
        for r in rows
    }
