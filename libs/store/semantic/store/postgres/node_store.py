"""The node repository: idempotent, version-ordered writes of nodes and their vectors.

One call to :meth:`NodeRepository.write` is one transaction: the nodes' write locks are
taken, each node's fate decided against what is stored (``semantic.core.nodes.decide``),
then nodes, keyword postings and vectors are written. Vectors are computed *before* the
transaction by the caller for the content it expects; if the stored content moved meanwhile,
:class:`~semantic.core.nodes.Replan` asks the caller to embed again.

Every transaction here that changes a node or its vectors first takes the nodes' write
locks (``node_locks``); the tenants' keyword statistics, the only rows shared between
nodes, are changed last, in tenant order (``keyword.add_stats``). One order for
everything: concurrent batches cannot deadlock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import asyncpg
import numpy as np

from semantic.common.errors import AlreadyExists
from semantic.core.domain import NodeRecord
from semantic.core.nodes import (
    DeleteOutcome,
    DeleteResult,
    Deletion,
    NodeWrite,
    Outcome,
    Replan,
    Stored,
    VectorRow,
    WriteResult,
    content_hash,
    decide,
    same_node,
    slug_stale,
)
from semantic.core.spaces import Space
from semantic.store.postgres import keyword
from semantic.store.postgres.db import as_array
from semantic.store.postgres.node_deletes import delete_stored
from semantic.store.postgres.node_locks import lock_nodes
from semantic.store.postgres.node_rows import node_from_row, node_select
from semantic.store.postgres.relations import (
    client_relations,
    related_nodes,
    replace_client_relations,
)
from semantic.store.postgres.rules import (
    node_rules,
    replace_node_rules,
    touch_rule_sets,
)


class NodeRepository:
    """Reads and writes nodes; vectors go to the given space's table."""

    def __init__(self, *, text_config: str) -> None:
        self._text_config = text_config

    async def stored(
        self, conn: asyncpg.Connection, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], Stored]:
        """Current state of (tenant, id) keys, tombstones included."""
        if not keys:
            return {}
        tenants, ids = [k[0] for k in keys], [k[1] for k in keys]
        rows = await conn.fetch(
            f"SELECT {node_select('n')}"
            " FROM semantic.nodes n JOIN unnest($1::text[], $2::text[]) AS k(tenant, id)"
            " ON n.tenant = k.tenant AND n.id = k.id",
            tenants,
            ids,
        )
        present = [(r["tenant"], r["id"]) for r in rows]
        relations = await client_relations(conn, present)
        rules = await node_rules(conn, present)
        found = {
            (r["tenant"], r["id"]): Stored(
                r["version"],
                r["content_hash"],
                replace(
                    node_from_row(r),
                    relations=relations.get((r["tenant"], r["id"]), ()),
                    rules=rules.get((r["tenant"], r["id"]), ()),
                ),
            )
            for r in rows
        }
        tombs = await conn.fetch(
            "SELECT t.tenant, t.id, t.version FROM semantic.node_tombstones t"
            " JOIN unnest($1::text[], $2::text[]) AS k(tenant, id)"
            " ON t.tenant = k.tenant AND t.id = k.id",
            tenants,
            ids,
        )
        for row in tombs:
            key = (row["tenant"], row["id"])
            if key not in found:
                found[key] = Stored(row["version"], None, None)
        return found

    async def apply(
        self, conn: asyncpg.Connection, space: Space, writes: Sequence[NodeWrite]
    ) -> list[WriteResult]:
        """Write a batch of upserts in one transaction (see :meth:`write`)."""
        results, _ = await self.write(conn, space, writes)
        return results

    async def write(
        self,
        conn: asyncpg.Connection,
        space: Space,
        writes: Sequence[NodeWrite],
        deletes: Sequence[Deletion] = (),
        every_space: Sequence[Space] = (),
    ) -> tuple[list[WriteResult], list[DeleteResult]]:
        """Upserts and deletes in one transaction; raises Replan if vectors must be recomputed.

        A node given twice in one batch: the highest version (the later one on a tie)
        is applied; the other is reported unchanged if identical, else stale. Deletes run
        after the upserts and remove the node's vectors from ``every_space``.
        """
        writes = [
            replace(w, node=replace(w.node, content_hash=content_hash(w.node))) for w in writes
        ]
        keys = [(w.node.tenant, w.node.id) for w in writes]
        winner: dict[tuple[str, str], int] = {}
        for index, write in enumerate(writes):
            best = winner.get(keys[index])
            if best is None or writes[best].node.version <= write.node.version:
                winner[keys[index]] = index
        stats = keyword.StatsDelta()
        async with conn.transaction():
            deleted = [(d.tenant, d.id) for d in deletes]
            await lock_nodes(
                conn, [*winner, *deleted, *await _relation_ends(conn, writes, deleted)]
            )
            stored = await self.stored(conn, sorted(winner))
            slug_tombs = await _slug_tombstones(conn, [writes[i].node for i in winner.values()])
            results: list[WriteResult] = []
            changed: list[NodeWrite] = []
            touched: list[NodeWrite] = []
            needs_vectors: list[tuple[str, str]] = []
            for index, write in enumerate(writes):
                key = keys[index]
                current = stored.get(key)
                if winner[key] != index:
                    same = same_node(write.node, writes[winner[key]].node)
                    outcome = Outcome.UNCHANGED if same else Outcome.STALE
                elif slug_stale(write.node, slug_tombs.get((key[0], write.node.slug or ""))):
                    outcome = Outcome.STALE  # older than a delete that named its slug
                else:
                    outcome = decide(write.node, current)
                if winner[key] == index and outcome in (Outcome.CREATED, Outcome.UPDATED):
                    if write.vectors is None:
                        needs_vectors.append(key)
                    changed.append(write)
                    touched.append(write)
                elif winner[key] == index and outcome is Outcome.METADATA_UPDATED:
                    touched.append(write)
                written = outcome in (Outcome.CREATED, Outcome.UPDATED) and winner[key] == index
                results.append(
                    WriteResult(
                        tenant=write.node.tenant,
                        id=write.node.id,
                        slug=write.node.slug,
                        outcome=outcome,
                        version=max(write.node.version, current.version if current else 0),
                        content_hash=write.node.content_hash,
                        vectors_written=len(write.vectors or ()) if written else 0,
                    )
                )
            if needs_vectors:
                raise Replan(needs_vectors)
            await self._check_slugs(conn, touched)
            await self._write_nodes(conn, touched, stored)
            await replace_client_relations(conn, [w.node for w in touched])
            ruled = await replace_node_rules(conn, [w.node for w in touched])
            await self._write_vectors(conn, space, changed)
            await self._write_postings(conn, changed, stats)
            if changed:
                await conn.execute(
                    "DELETE FROM semantic.node_tombstones t USING unnest($1::text[], $2::text[])"
                    " AS k(tenant, id) WHERE t.tenant = k.tenant AND t.id = k.id",
                    [w.node.tenant for w in changed],
                    [w.node.id for w in changed],
                )
            removed = (
                await self._delete(conn, every_space, deletes, stats, ruled) if deletes else []
            )
            await touch_rule_sets(conn, ruled)
            await keyword.add_stats(conn, stats)
        return results, removed

    async def _check_slugs(self, conn: asyncpg.Connection, writes: Sequence[NodeWrite]) -> None:
        pairs = [(w.node.tenant, w.node.slug, w.node.id) for w in writes if w.node.slug]
        if not pairs:
            return
        row = await conn.fetchrow(
            "SELECT n.tenant, n.slug, n.id FROM semantic.nodes n"
            " JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(tenant, slug, id)"
            " ON n.tenant = k.tenant AND n.slug = k.slug AND n.id <> k.id LIMIT 1",
            [p[0] for p in pairs],
            [p[1] for p in pairs],
            [p[2] for p in pairs],
        )
        if row is not None:
            raise AlreadyExists("slug", f"{row['slug']!r} is used by node {row['id']!r}")
        seen: dict[tuple[str, str | None], str] = {}
        for tenant, slug, node_id in pairs:
            other = seen.setdefault((tenant, slug), node_id)
            if other != node_id:
                raise AlreadyExists("slug", f"{slug!r} is given to nodes {other!r} and {node_id!r}")

    async def _write_nodes(
        self,
        conn: asyncpg.Connection,
        writes: Sequence[NodeWrite],
        stored: dict[tuple[str, str], Stored],
    ) -> None:
        if not writes:
            return
        try:
            await self._insert_nodes(conn, writes, stored)
        except asyncpg.UniqueViolationError as exc:
            # Two writers gave one slug to two nodes at the same moment: the check before the
            # insert could not see the other's uncommitted row; the unique index did.
            raise AlreadyExists("slug", _raced_slug(writes, exc.detail or "")) from exc

    async def _insert_nodes(
        self,
        conn: asyncpg.Connection,
        writes: Sequence[NodeWrite],
        stored: dict[tuple[str, str], Stored],
    ) -> None:
        await conn.executemany(
            "INSERT INTO semantic.nodes (tenant, id, slug, content_type, title, body, texts,"
            " tags, metadata, content_hash, version, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,"
            " coalesce($12::timestamptz, now()))"
            " ON CONFLICT (tenant, id) DO UPDATE SET slug = EXCLUDED.slug,"
            " content_type = EXCLUDED.content_type, title = EXCLUDED.title,"
            " body = EXCLUDED.body, texts = EXCLUDED.texts, tags = EXCLUDED.tags,"
            " metadata = EXCLUDED.metadata, content_hash = EXCLUDED.content_hash,"
            " version = GREATEST(semantic.nodes.version, EXCLUDED.version), updated_at = now(),"
            # A creation time given (a publish date) is kept; none given keeps the stored one.
            " created_at = coalesce($12::timestamptz, semantic.nodes.created_at)"
            # Never reached under the node locks; a guard should a writer ever skip them.
            " WHERE semantic.nodes.version <= EXCLUDED.version",
            [
                (
                    n.tenant,
                    n.id,
                    n.slug,
                    n.content_type,
                    n.title,
                    n.body,
                    dict(n.texts),
                    list(n.tags),
                    dict(n.metadata),
                    n.content_hash,
                    n.version or _stored_version(stored, n),
                    n.created_at,
                )
                for n in (w.node for w in writes)
            ],
        )

    async def _write_postings(
        self, conn: asyncpg.Connection, writes: Sequence[NodeWrite], stats: keyword.StatsDelta
    ) -> None:
        for tenant, group in _by_tenant(writes):
            docs = [(w.node.id, _keyword_text(w.node)) for w in group]
            await keyword.index_postings(conn, tenant, docs, stats, text_config=self._text_config)

    async def _write_vectors(
        self, conn: asyncpg.Connection, space: Space, writes: Sequence[NodeWrite]
    ) -> None:
        if not writes:
            return
        await conn.execute(
            f"DELETE FROM {space.table} v USING unnest($1::text[], $2::text[]) AS k(tenant, id)"
            " WHERE v.tenant = k.tenant AND v.node_id = k.id",
            [w.node.tenant for w in writes],
            [w.node.id for w in writes],
        )
        await _copy_vectors(
            conn,
            space,
            [
                (w.node.tenant, w.node.id, w.node.content_hash, row)
                for w in writes
                for row in (w.vectors or ())
            ],
        )

    async def replace_vectors(
        self,
        conn: asyncpg.Connection,
        space: Space,
        computed: Mapping[tuple[str, str], Sequence[VectorRow]],
        expected_hash: Mapping[tuple[str, str], str],
    ) -> list[tuple[str, str]]:
        """Replace the computed (not client-supplied) vectors of nodes in ``space``, in one
        transaction, for the nodes whose stored content hash is still ``expected_hash``."""
        keys = sorted(expected_hash)
        if not keys:
            return []
        async with conn.transaction():
            await lock_nodes(conn, keys)
            rows = await conn.fetch(
                "SELECT n.tenant, n.id, n.content_hash FROM semantic.nodes n"
                " JOIN unnest($1::text[], $2::text[]) AS k(tenant, id)"
                " ON n.tenant = k.tenant AND n.id = k.id",
                [k[0] for k in keys],
                [k[1] for k in keys],
            )
            current = sorted(
                (r["tenant"], r["id"], r["content_hash"])
                for r in rows
                if expected_hash.get((r["tenant"], r["id"])) == r["content_hash"]
            )
            if not current:
                return []
            tenants, ids = [c[0] for c in current], [c[1] for c in current]
            await conn.execute(
                f"DELETE FROM {space.table} v USING unnest($1::text[], $2::text[]) AS k(tenant, id)"
                " WHERE v.tenant = k.tenant AND v.node_id = k.id AND NOT v.client_supplied",
                tenants,
                ids,
            )
            client_names = {
                (r["tenant"], r["node_id"], r["name"])
                for r in await conn.fetch(
                    f"SELECT v.tenant, v.node_id, v.name FROM {space.table} v"
                    " JOIN unnest($1::text[], $2::text[]) AS k(tenant, id)"
                    " ON v.tenant = k.tenant AND v.node_id = k.id",
                    tenants,
                    ids,
                )
            }
            await _copy_vectors(
                conn,
                space,
                [
                    (tenant, node_id, content, row)
                    for tenant, node_id, content in current
                    for row in computed.get((tenant, node_id), ())
                    if (tenant, node_id, row.name) not in client_names
                ],
            )
        return [(c[0], c[1]) for c in current]

    async def delete(
        self,
        conn: asyncpg.Connection,
        spaces: Sequence[Space],
        tenant: str,
        ids: Sequence[str],
        version: int = 0,
        *,
        unheld_slugs: Sequence[str] = (),
        named_slugs: Mapping[str, str] | None = None,
    ) -> list[tuple[str, str | None, DeleteOutcome]]:
        """Delete nodes (and their vectors in every space) in one transaction, leaving
        tombstones so older upserts arriving later stay out; ``unheld_slugs``: slugs no
        node held when resolved, deleted as ``Deletion.by_slug`` (their results name the
        slug, not an id); ``named_slugs``: id -> the slug the delete named it by
        (``Deletion.named_slug``)."""
        named = named_slugs or {}
        deletes = [
            Deletion(tenant, node_id, version, named_slug=named.get(node_id))
            for node_id in dict.fromkeys(ids)
        ]
        deletes += [
            Deletion(tenant, slug, version, by_slug=slug, named_slug=slug)
            for slug in dict.fromkeys(unheld_slugs)
            if slug not in ids
        ]
        stats = keyword.StatsDelta()
        async with conn.transaction():
            deleted = [(d.tenant, d.id) for d in deletes]
            await lock_nodes(conn, [*deleted, *await _relation_ends(conn, (), deleted)])
            ruled: set[str] = set()
            removed = await self._delete(conn, spaces, deletes, stats, ruled)
            await touch_rule_sets(conn, ruled)
            await keyword.add_stats(conn, stats)
        slugged = {d.id for d in deletes if d.by_slug is not None}
        return [
            ("", r.id, r.outcome)
            if r.id in slugged and r.outcome is DeleteOutcome.NOT_FOUND
            else (r.id, r.slug, r.outcome)
            for r in removed
        ]

    async def _delete(
        self,
        conn: asyncpg.Connection,
        spaces: Sequence[Space],
        deletes: Sequence[Deletion],
        stats: keyword.StatsDelta,
        ruled: set[str],
    ) -> list[DeleteResult]:
        """Deletions inside the caller's transaction, the nodes' locks held; the tenants
        whose rules went are added to ``ruled`` (the caller touches them)."""
        stored = await self.stored(conn, [(d.tenant, d.id) for d in deletes])
        return await delete_stored(conn, spaces, deletes, stored, stats=stats, ruled=ruled)

    async def get(
        self,
        conn: asyncpg.Connection,
        tenant: str,
        *,
        ids: Sequence[str] = (),
        slugs: Sequence[str] = (),
    ) -> list[NodeRecord]:
        """Nodes by id and/or slug, in no particular order."""
        rows = await conn.fetch(
            f"SELECT {node_select('n')} FROM semantic.nodes n"
            " WHERE n.tenant = $1 AND (n.id = ANY($2::text[]) OR n.slug = ANY($3::text[]))",
            tenant,
            list(ids),
            list(slugs),
        )
        return [node_from_row(r) for r in rows]

    async def centre(
        self,
        conn: asyncpg.Connection,
        space: Space,
        tenant: str,
        *,
        node_id: str | None,
        slug: str | None,
        name: str,
    ) -> tuple[str, np.ndarray[Any, Any] | None] | None:
        """A node (by id, else slug) and the mean of its ``name`` vectors in ``space`` (None
        when it has none); None when there is no such node. One statement."""
        key = "id" if node_id is not None else "slug"
        row = await conn.fetchrow(
            f"SELECT n.id, avg(v.embedding) AS centre FROM semantic.nodes n"
            f" LEFT JOIN {space.table} v"
            "   ON v.tenant = n.tenant AND v.node_id = n.id AND v.name = $3"
            f" WHERE n.tenant = $1 AND n.{key} = $2 GROUP BY n.id",
            tenant,
            node_id if node_id is not None else slug,
            name,
        )
        if row is None:
            return None
        centre = row["centre"]
        return row["id"], None if centre is None else as_array(centre)

    async def vectors(
        self,
        conn: asyncpg.Connection,
        space: Space,
        tenant: str,
        ids: Sequence[str],
        name: str | None = None,
    ) -> dict[str, list[VectorRow]]:
        """Stored vectors of nodes in ``space`` (of one vector name if given), by node id."""
        rows = await conn.fetch(
            "SELECT node_id, name, chunk, span_start, span_end, client_supplied, embedding"
            f" FROM {space.table} WHERE tenant = $1 AND node_id = ANY($2::text[])"
            " AND ($3::text IS NULL OR name = $3) ORDER BY node_id, name, chunk",
            tenant,
            list(ids),
            name,
        )
        out: dict[str, list[VectorRow]] = {}
        for r in rows:
            out.setdefault(r["node_id"], []).append(
                VectorRow(
                    r["name"],
                    r["chunk"],
                    r["span_start"],
                    r["span_end"],
                    as_array(r["embedding"]),
                    r["client_supplied"],
                )
            )
        return out


async def _copy_vectors(
    conn: asyncpg.Connection, space: Space, rows: Sequence[tuple[str, str, str, VectorRow]]
) -> None:
    """COPY (tenant, node id, content hash, vector row) into the space's table."""
    if not rows:
        return
    await conn.copy_records_to_table(
        space.table.split(".", 1)[1],
        schema_name="semantic",
        records=[
            (
                tenant,
                node_id,
                row.name,
                row.chunk,
                content,
                row.span_start,
                row.span_end,
                row.client_supplied,
                np.asarray(row.embedding, dtype=np.float32),
            )
            for tenant, node_id, content, row in rows
        ],
        columns=[
            "tenant",
            "node_id",
            "name",
            "chunk",
            "content_hash",
            "span_start",
            "span_end",
            "client_supplied",
            "embedding",
        ],
    )


def _stored_version(stored: dict[tuple[str, str], Stored], node: NodeRecord) -> int:
    current = stored.get((node.tenant, node.id))
    return current.version if current else 0


def _keyword_text(node: NodeRecord) -> str:
    extra = " ".join(text for name, text in sorted(node.texts.items()) if name != "content")
    return " ".join(part for part in (node.text_for("content"), extra) if part)


def _by_tenant(writes: Sequence[NodeWrite]) -> list[tuple[str, list[NodeWrite]]]:
    groups: dict[str, list[NodeWrite]] = {}
    for write in writes:
        groups.setdefault(write.node.tenant, []).append(write)
    return list(groups.items())


async def _relation_ends(
    conn: asyncpg.Connection, writes: Sequence[NodeWrite], deleted: Sequence[tuple[str, str]]
) -> set[tuple[str, str]]:
    """The other ends of the relations a transaction will change: those of nodes whose
    relations it replaces (stored and given) and of nodes it deletes (both ways), whose
    locks it takes with its own (``relations.related_nodes``). Nothing to read for writes
    that keep their relations."""
    replaced = [w.node for w in writes if w.node.relations is not None]
    given = {(n.tenant, r.node_id) for n in replaced for r in n.relations or ()}
    changed = [*((n.tenant, n.id) for n in replaced), *deleted]
    return given | await related_nodes(conn, changed) if changed else given


async def _slug_tombstones(
    conn: asyncpg.Connection, nodes: Sequence[NodeRecord]
) -> dict[tuple[str, str], int]:
    """(tenant, slug) -> the newest version a delete naming a node by that slug left, for
    the versioned nodes here that carry a slug."""
    keys = sorted({(n.tenant, n.slug) for n in nodes if n.slug and n.version})
    if not keys:
        return {}
    rows = await conn.fetch(
        "SELECT t.tenant, t.slug, max(t.version) AS version FROM semantic.node_tombstones t"
        " JOIN unnest($1::text[], $2::text[]) AS k(tenant, slug)"
        " ON t.tenant = k.tenant AND t.slug = k.slug GROUP BY t.tenant, t.slug",
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    return {(r["tenant"], r["slug"]): r["version"] for r in rows}


def _raced_slug(writes: Sequence[NodeWrite], detail: str) -> str:
    """What a slug race's ALREADY_EXISTS says: the slug (from the batch, the one the unique
    index's ``Key (tenant, slug)=(..., slug) already exists.`` ends with), not the
    database's own text."""
    slugs = list(dict.fromkeys(w.node.slug for w in writes if w.node.slug))
    raced = [s for s in slugs if detail.endswith(f", {s}) already exists.")]
    if len(raced) == 1 or len(slugs) == 1:
        slug = raced[0] if raced else slugs[0]
        return f"{slug!r} was given to another node at the same moment"
    return "one of the slugs was given to another node at the same moment"
