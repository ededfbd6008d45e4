"""Guardian rules in PostgreSQL (``semantic.rules`` and ``semantic.rule_sets``, migration
006).

The write path writes a node's rules with the node (:func:`replace_node_rules` inside its
transaction, under its node lock) and deletes the rules of a deleted node
(:func:`delete_node_rules`); each transaction that changes a tenant's rules then gives the
tenant a new stamp (:func:`touch_rule_sets`, once, in tenant order, before the keyword
statistics: one lock order for every writer). :class:`PostgresRules` answers WriteRules,
RemoveRules, the rules of Get and what a check needs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import asyncpg

from semantic.common.errors import InvalidArgument, NotFound
from semantic.core.domain import NodeRecord
from semantic.core.rules import (
    Kind,
    NodeRule,
    Rule,
    RuleScope,
    RuleWrite,
    ScopeCondition,
    ScopeTest,
    Severity,
)
from semantic.store.postgres.db import connection
from semantic.store.postgres.node_locks import lock_nodes

Key = tuple[str, str]
_COLUMNS = (
    "r.tenant, r.node_id, r.rule_id, r.pattern, r.kind, r.case_insensitive, r.scope,"
    " r.severity, r.action, r.message, r.active, r.updated_at"
)
_WRITTEN = "pattern, kind, case_insensitive, scope, severity, action, message, active"


def scope_to_json(scope: RuleScope) -> dict[str, Any]:
    """A scope as the JSON object of the ``scope`` column ({} when empty)."""
    out: dict[str, Any] = {}
    if scope.tags_any:
        out["tags_any"] = list(scope.tags_any)
    if scope.metadata:
        out["metadata"] = [
            {"key": c.key, c.test.value: list(c.value) if c.test is ScopeTest.ANY_OF else c.value}
            for c in scope.metadata
        ]
    return out


def scope_from_json(value: Mapping[str, Any]) -> RuleScope:
    """The ``scope`` column as a RuleScope."""
    conditions = []
    for item in value.get("metadata", ()):
        test = next(t for t in ScopeTest if t.value in item)
        found = item[test.value]
        conditions.append(
            ScopeCondition(item["key"], test, tuple(found) if test is ScopeTest.ANY_OF else found)
        )
    return RuleScope(tuple(value.get("tags_any", ())), tuple(conditions))


def rule_from_row(row: asyncpg.Record) -> Rule:
    """A Rule from a row holding the columns of ``_COLUMNS``."""
    return Rule(
        id=row["rule_id"],
        pattern=row["pattern"],
        kind=Kind(row["kind"]),
        case_insensitive=row["case_insensitive"],
        scope=scope_from_json(row["scope"]),
        severity=Severity(row["severity"]),
        action=row["action"],
        message=row["message"],
        active=row["active"],
        updated_at=row["updated_at"],
    )


async def node_rules(conn: asyncpg.Connection, keys: Sequence[Key]) -> dict[Key, tuple[Rule, ...]]:
    """The rules of (tenant, id) nodes, by rule id."""
    if not keys:
        return {}
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM semantic.rules r"
        " JOIN unnest($1::text[], $2::text[]) AS k(tenant, id)"
        " ON r.tenant = k.tenant AND r.node_id = k.id ORDER BY r.tenant, r.node_id, r.rule_id",
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    out: dict[Key, list[Rule]] = {}
    for r in rows:
        out.setdefault((r["tenant"], r["node_id"]), []).append(rule_from_row(r))
    return {key: tuple(found) for key, found in out.items()}


async def replace_node_rules(conn: asyncpg.Connection, nodes: Sequence[NodeRecord]) -> set[str]:
    """For each node whose ``rules`` is set: its rules become those (unchanged rules keep
    their ``updated_at``). In the caller's transaction, under the nodes' locks. Returns
    the tenants whose rules changed (to be touched)."""
    given = [n for n in nodes if n.rules is not None]
    if not given:
        return set()
    removed = await conn.fetch(
        "DELETE FROM semantic.rules r"
        " USING unnest($1::text[], $2::text[], $3::text[]) AS k(tenant, id, kept)"
        " WHERE r.tenant = k.tenant AND r.node_id = k.id"
        " AND NOT (r.rule_id = ANY(string_to_array(k.kept, '/')))"
        " RETURNING r.tenant",
        [n.tenant for n in given],
        [n.id for n in given],
        # Rule ids never hold "/": a node's kept ids joined in one text (no ragged arrays).
        ["/".join(rule.id for rule in n.rules or ()) for n in given],
    )
    rows = [(n.tenant, n.id, rule) for n in given for rule in n.rules or ()]
    written = await _upsert(conn, rows)
    return {r["tenant"] for r in removed} | {r["tenant"] for r in written}


async def delete_node_rules(conn: asyncpg.Connection, tenant: str, ids: Sequence[str]) -> bool:
    """Delete the rules of nodes ``ids`` of ``tenant``; whether there were any."""
    status = await conn.execute(
        "DELETE FROM semantic.rules WHERE tenant = $1 AND node_id = ANY($2::text[])",
        tenant,
        list(ids),
    )
    return not status.endswith(" 0")


async def touch_rule_sets(conn: asyncpg.Connection, tenants: Iterable[str]) -> None:
    """Give each tenant a new stamp (its rules changed in this transaction)."""
    ordered = sorted(set(tenants))
    if ordered:
        await conn.execute(
            "INSERT INTO semantic.rule_sets AS s (tenant)"
            " SELECT t FROM unnest($1::text[]) AS t ORDER BY t"
            " ON CONFLICT (tenant) DO UPDATE SET stamp = gen_random_uuid(), changed_at = now()",
            ordered,
        )


async def _upsert(
    conn: asyncpg.Connection, rows: Sequence[tuple[str, str, Rule]]
) -> list[asyncpg.Record]:
    """Insert or update (tenant, node, rule) rows; the rows created or changed, each with
    ``inserted``."""
    if not rows:
        return []
    ordered = sorted(rows, key=lambda e: (e[0], e[1], e[2].id))
    written: list[asyncpg.Record] = await conn.fetch(
        f"INSERT INTO semantic.rules AS r (tenant, node_id, rule_id, {_WRITTEN})"
        " SELECT k.tenant, k.node_id, k.rule_id, k.pattern, k.kind, k.case_insensitive,"
        " k.scope::jsonb, k.severity, k.action, k.message, k.active"
        " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],"
        " $6::bool[], $7::text[], $8::text[], $9::text[], $10::text[], $11::bool[])"
        " AS k(tenant, node_id, rule_id, pattern, kind, case_insensitive, scope, severity,"
        " action, message, active)"
        " ON CONFLICT (tenant, node_id, rule_id) DO UPDATE SET"
        " pattern = EXCLUDED.pattern, kind = EXCLUDED.kind,"
        " case_insensitive = EXCLUDED.case_insensitive, scope = EXCLUDED.scope,"
        " severity = EXCLUDED.severity, action = EXCLUDED.action,"
        " message = EXCLUDED.message, active = EXCLUDED.active, updated_at = now()"
        f" WHERE ({', '.join('r.' + c for c in _WRITTEN.split(', '))})"
        f" IS DISTINCT FROM ({', '.join('EXCLUDED.' + c for c in _WRITTEN.split(', '))})"
        " RETURNING r.tenant, (xmax = 0) AS inserted",
        [e[0] for e in ordered],
        [e[1] for e in ordered],
        [e[2].id for e in ordered],
        [e[2].pattern for e in ordered],
        [e[2].kind.value for e in ordered],
        [e[2].case_insensitive for e in ordered],
        [json.dumps(scope_to_json(e[2].scope)) for e in ordered],
        [e[2].severity.value for e in ordered],
        [e[2].action for e in ordered],
        [e[2].message for e in ordered],
        [e[2].active for e in ordered],
    )
    return written


class PostgresRules:
    """The :class:`~semantic.core.rules.RuleStore` on a pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def write(
        self, tenant: str, node_id: str, rules: Sequence[Rule], *, replace: bool, max_rules: int
    ) -> RuleWrite:
        """Create or update under the node's lock (ordered with its writes and deletes)."""
        async with connection(self._pool) as conn, conn.transaction():
            await lock_nodes(conn, [(tenant, node_id)])
            exists = await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM semantic.nodes WHERE tenant = $1 AND id = $2)",
                tenant,
                node_id,
            )
            if not exists:
                raise NotFound("node", node_id)
            removed = 0
            if replace:
                status = await conn.execute(
                    "DELETE FROM semantic.rules WHERE tenant = $1 AND node_id = $2"
                    " AND NOT (rule_id = ANY($3::text[]))",
                    tenant,
                    node_id,
                    [r.id for r in rules],
                )
                removed = int(status.rsplit(" ", 1)[-1])
            written = await _upsert(conn, [(tenant, node_id, r) for r in rules])
            held = await conn.fetchval(
                "SELECT count(*) FROM semantic.rules WHERE tenant = $1 AND node_id = $2",
                tenant,
                node_id,
            )
            if held > max_rules:
                raise InvalidArgument(
                    "rules", f"the node would hold {held} rules, at most {max_rules} are allowed"
                )
            if removed or written:
                await touch_rule_sets(conn, [tenant])
        created = sum(1 for r in written if r["inserted"])
        return RuleWrite(created=created, updated=len(written) - created, removed=removed)

    async def remove(self, tenant: str, node_id: str, rule_ids: Sequence[str]) -> int:
        """Remove by id, under the node's lock."""
        async with connection(self._pool) as conn, conn.transaction():
            await lock_nodes(conn, [(tenant, node_id)])
            status = await conn.execute(
                "DELETE FROM semantic.rules WHERE tenant = $1 AND node_id = $2"
                " AND rule_id = ANY($3::text[])",
                tenant,
                node_id,
                list(rule_ids),
            )
            removed = int(status.rsplit(" ", 1)[-1])
            if removed:
                await touch_rule_sets(conn, [tenant])
        return removed

    async def of_nodes(self, tenant: str, ids: Sequence[str]) -> dict[str, list[Rule]]:
        """Each node's rules, by rule id."""
        async with connection(self._pool) as conn:
            found = await node_rules(conn, [(tenant, i) for i in ids])
        return {key[1]: list(rules) for key, rules in found.items()}

    async def stamp(self, tenant: str) -> str | None:
        """The tenant's stamp (None: its rules were never written)."""
        async with connection(self._pool) as conn:
            value = await conn.fetchval(
                "SELECT stamp FROM semantic.rule_sets WHERE tenant = $1", tenant
            )
        return None if value is None else str(value)

    async def tenant_rules(self, tenant: str) -> tuple[str | None, list[NodeRule]]:
        """Every rule of the tenant with its stamp, read at one point in time."""
        async with (
            connection(self._pool) as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            value = await conn.fetchval(
                "SELECT stamp FROM semantic.rule_sets WHERE tenant = $1", tenant
            )
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM semantic.rules r WHERE r.tenant = $1"
                " ORDER BY r.node_id, r.rule_id",
                tenant,
            )
        stamp = None if value is None else str(value)
        return stamp, [NodeRule(r["node_id"], rule_from_row(r)) for r in rows]

    async def titles(self, tenant: str, ids: Sequence[str]) -> dict[str, str]:
        """Titles of the nodes ``ids`` that exist."""
        if not ids:
            return {}
        async with connection(self._pool) as conn:
            rows = await conn.fetch(
                "SELECT id, title FROM semantic.nodes WHERE tenant = $1 AND id = ANY($2::text[])",
                tenant,
                list(ids),
            )
        return {r["id"]: r["title"] for r in rows}
