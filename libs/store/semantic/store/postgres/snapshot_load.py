"""Snapshot import: Parquet files COPYed into temporary tables, then applied with set-based
``INSERT ... ON CONFLICT`` in one transaction (the database is left as it was on any
failure).

Nodes follow the write path's version rules: a stored node whose version is newer than the
snapshot's is kept (both versioned; unversioned rows compare ``updated_at``), a row equal to
the stored one is unchanged, anything else is written. Postings and vectors are written for
the nodes written (vectors only into a matching space); a newer snapshot tombstone deletes
the stored node. Relations follow their source node: a node the import writes gets the
snapshot's relations from it (its stored client relations go), a stored node newer than the
snapshot's keeps its own, any other gains the snapshot's relations it lacks; a client
relation replaces a discovered one of the same key, never the reverse; a snapshot written
before relations existed has no relations file and changes none. Guardian rules follow their
node the same way: a node the import writes gets exactly the snapshot's rules, a stored node
newer than the snapshot's keeps its own, any other gains the snapshot's rules it lacks;
rules go with the nodes a tombstone deletes; a snapshot without a rules file changes none;
every tenant's rule stamp is renewed (compiled rules are read again). What discovery knew of
a node cleared or deleted goes with it, and a node the snapshot brings discovered relations
of is examined again by discovery. The recommendation tables (events, users, engagement,
archetypes) are derived from the event log: rows missing in the database are added, existing
rows kept. ``replace`` clears the tenants in scope first, so everything then loads as new.

A space's vectors going into an empty vector table (a restore into a new database, or a
``replace`` of everything) are written first and indexed after: the table's HNSW index is
dropped and created again from its own definition inside the transaction (a reader of that
table waits for the commit; the table was empty). The build uses the server's
``maintenance_work_mem``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import asyncpg

from semantic.core.snapshot import DbSpace, ImportReport, Manifest, SnapshotInvalid, vectors_file
from semantic.core.spaces import ACTIVE, vector_table
from semantic.store.postgres.snapshot import (
    FEEDBACK_EVENTS,
    NODES,
    POSTINGS,
    RELATIONS,
    RULES,
    TABLES,
    TOMBSTONES,
    Table,
)
from semantic.store.postgres.snapshot_files import Progress, load_file
from semantic.store.postgres.spaces import ensure_space

BULK_ROWS = 10_000
"""Vector rows from which an import into an empty vector table drops its HNSW index and
builds it again after the rows (one build is several times faster than as many
insertions into a live graph); fewer rows go into the index one by one."""

_NEWER = """CASE WHEN s.version > 0 AND n.version > 0 THEN s.version > n.version
               ELSE s.updated_at > n.updated_at END"""
_SAME_NODE = """(s.slug, s.content_type, s.title, s.body, s.texts, s.tags, s.metadata,
     s.content_hash, s.version, s.doc_length, s.created_at, s.updated_at)
    IS NOT DISTINCT FROM
    (n.slug, n.content_type, n.title, n.body, n.texts, n.tags, n.metadata,
     n.content_hash, n.version, n.doc_length, n.created_at, n.updated_at)"""
_FATE = f"""
CREATE TEMP TABLE snap_fate ON COMMIT DROP AS
SELECT s.tenant, s.id,
  CASE
    WHEN n.id IS NULL AND t.id IS NOT NULL AND NOT (
      CASE WHEN s.version > 0 AND t.version > 0 THEN s.version > t.version
           ELSE s.updated_at > t.deleted_at END) THEN 'kept'
    WHEN n.id IS NULL THEN 'created'
    WHEN {_SAME_NODE} THEN 'unchanged'
    WHEN {_NEWER} THEN 'updated'
    ELSE 'kept'
  END AS fate
FROM snap_nodes s
LEFT JOIN semantic.nodes n ON n.tenant = s.tenant AND n.id = s.id
LEFT JOIN semantic.node_tombstones t ON t.tenant = s.tenant AND t.id = s.id
"""
_WRITE_NODES = """
INSERT INTO semantic.nodes AS n
SELECT s.* FROM snap_nodes s JOIN snap_fate f USING (tenant, id)
WHERE f.fate IN ('created', 'updated')
ORDER BY s.tenant, s.id
ON CONFLICT (tenant, id) DO UPDATE SET
  slug = EXCLUDED.slug, content_type = EXCLUDED.content_type, title = EXCLUDED.title,
  body = EXCLUDED.body, texts = EXCLUDED.texts, tags = EXCLUDED.tags,
  metadata = EXCLUDED.metadata, content_hash = EXCLUDED.content_hash,
  version = EXCLUDED.version, doc_length = EXCLUDED.doc_length,
  created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at
"""
# Stored nodes a newer snapshot tombstone deletes (not re-created by the snapshot itself).
_TOMBSTONED = """
CREATE TEMP TABLE snap_gone ON COMMIT DROP AS
SELECT n.tenant, n.id FROM semantic.nodes n
JOIN snap_node_tombstones s ON s.tenant = n.tenant AND s.id = n.id
WHERE CASE WHEN s.version > 0 AND n.version > 0 THEN s.version >= n.version
           ELSE s.deleted_at > n.updated_at END
  AND NOT EXISTS (SELECT 1 FROM snap_fate f WHERE f.tenant = n.tenant AND f.id = n.id
                  AND f.fate IN ('created', 'updated', 'unchanged'))
"""
_STATS = """
INSERT INTO semantic.keyword_stats AS k (tenant, documents, total_length)
SELECT tenant, sum(documents), sum(total_length) FROM snap_stats GROUP BY tenant ORDER BY tenant
ON CONFLICT (tenant) DO UPDATE
SET documents = k.documents + EXCLUDED.documents,
    total_length = k.total_length + EXCLUDED.total_length
"""


async def database_spaces(conn: asyncpg.Connection) -> list[DbSpace]:
    """The target database's embedding spaces that have a vector table."""
    rows = await conn.fetch(
        "SELECT s.id, s.model_id, s.model_sha256, s.dim, s.version, s.state,"
        " (a.space_id IS NOT NULL) AS active FROM semantic.embedding_spaces s"
        " LEFT JOIN semantic.space_aliases a ON a.name = $1 AND a.space_id = s.id"
        " WHERE to_regclass('semantic.vectors_' || s.id) IS NOT NULL ORDER BY s.id",
        ACTIVE,
    )
    return [DbSpace(**dict(r)) for r in rows]


class SnapshotLoader:
    """Applies one verified snapshot to the database of ``conn`` in one transaction."""

    def __init__(
        self,
        conn: asyncpg.Connection,
        folder: Path,
        manifest: Manifest,
        *,
        tenants: Sequence[str] | None = None,
        batch_size: int = 5_000,
        progress: Progress | None = None,
    ) -> None:
        self._conn = conn
        self._folder = folder
        self._manifest = manifest
        self._tenants = sorted(set(tenants)) if tenants else None
        self._batch = max(1, batch_size)
        self._progress = progress
        self._file = ""
        """The file being loaded (named when its rows break a key)."""

    async def run(
        self,
        report: ImportReport,
        mapping: dict[int, int | None],
        create: Sequence[int],
        replace: list[str] | bool | None,
    ) -> ImportReport:
        """Load everything; ``replace`` is False (merge), None (every tenant) or tenants."""
        try:
            return await self._run(report, mapping, create, replace)
        except (asyncpg.CardinalityViolationError, asyncpg.UniqueViolationError) as exc:
            raise SnapshotInvalid(
                f"{self._file} holds one row twice (a key repeats): {exc}"
            ) from exc
        except (UnicodeError, TypeError, ValueError, OverflowError, asyncpg.DataError) as exc:
            # Rows the files' checksums vouch for but the tables cannot take: text that is
            # not UTF-8, a column of another type.
            raise SnapshotInvalid(
                f"{self._file} holds a value its column cannot take: {exc}"
            ) from exc

    async def _run(
        self,
        report: ImportReport,
        mapping: dict[int, int | None],
        create: Sequence[int],
        replace: list[str] | bool | None,
    ) -> ImportReport:
        async with self._conn.transaction():
            existing = {space.id for space in await database_spaces(self._conn)}
            for space_id in create:
                entry = next(s for s in self._manifest.spaces if s.id == space_id)
                made = await ensure_space(
                    self._conn,
                    model_id=entry.model_id,
                    model_sha256=entry.model_sha256,
                    dim=entry.dim,
                    activate_if_none=entry.active,
                    index_precision=entry.index_precision,
                )
                if made.id not in existing and made.state == "building" != entry.state:
                    # A new space holds the snapshot's vectors, complete as exported: it is
                    # READY (a switch stays the operator's), never a build for a heal loop
                    # to finish and activate on its own.
                    await self._conn.execute(
                        "UPDATE semantic.embedding_spaces SET state = 'ready' WHERE id = $1",
                        made.id,
                    )
                mapping[space_id] = made.id
            report.spaces = dict(mapping)
            await self._touch_rule_sets()  # first: the write path's lock order
            if replace is None or isinstance(replace, list):
                report.replaced = await self._clear(replace)
            await self._nodes(report)
            await self._tombstones(report)
            await self._postings(report)
            await self._relations(report)
            await self._rules(report)
            for entry in self._manifest.spaces:
                target = mapping.get(entry.id)
                if target is not None:
                    await self._vectors(report, entry.id, target)
            own = (NODES, TOMBSTONES, POSTINGS, RELATIONS, RULES)
            for table in TABLES:  # an older snapshot lacks the newer tables' files
                if table not in own and table.file in self._manifest.files:
                    await self._derived(report, table, mapping)
            await self._recount_feedback()
        return report

    async def _load(self, file: str, temp: str, like: str) -> None:
        """COPY a Parquet file (rows of the tenants in scope) into a new temp table."""
        self._file = file
        await load_file(
            self._conn,
            self._folder,
            self._manifest,
            file,
            temp=temp,
            like=like,
            tenants=self._tenants,
            batch_size=self._batch,
            progress=self._progress,
        )

    async def _clear(self, tenants: list[str] | None) -> int:
        """Delete the tenants' rows (every tenant's when None) from every snapshot table and
        vector table; with a content-type filter in the manifest, only the nodes of those
        types (and their postings and vectors) go, with the tenants' other tables."""
        where, args = ("tenant = ANY($1::text[])", [tenants]) if tenants else ("true", [])
        types = self._manifest.content_types
        node_where = f"{where} AND content_type = ANY(${len(args) + 1}::text[])" if types else where
        await self._conn.execute(
            "CREATE TEMP TABLE snap_cleared ON COMMIT DROP AS SELECT tenant, id"
            f" FROM semantic.nodes WHERE {node_where}",
            *args,
            *([types] if types else []),
        )
        deleted = 0
        keyed = [POSTINGS.name, RULES.name]
        keyed += [f"vectors_{s.id}" for s in await database_spaces(self._conn)]
        for name in keyed:
            status = await self._conn.execute(
                f"DELETE FROM semantic.{name} x USING snap_cleared c"
                " WHERE x.tenant = c.tenant AND x.node_id = c.id"
            )
            deleted += _count(status)
        status = await self._conn.execute(
            "DELETE FROM semantic.nodes x USING snap_cleared c"
            " WHERE x.tenant = c.tenant AND x.id = c.id"
        )
        deleted += _count(status)
        await self._recount_stats(tenants)
        if types:  # only the relations from and to the nodes cleared
            status = await self._conn.execute(
                "DELETE FROM semantic.relations x USING snap_cleared c WHERE x.tenant = c.tenant"
                " AND (x.source_id = c.id OR x.target_id = c.id)"
            )
            deleted += _count(status)
            await self._conn.execute(
                "DELETE FROM semantic.relation_discovery x USING snap_cleared c"
                " WHERE x.tenant = c.tenant AND x.node_id = c.id"
            )
        else:  # what discovery knew of the nodes cleared (not a snapshot table)
            await self._conn.execute(
                f"DELETE FROM semantic.relation_discovery WHERE {where}", *args
            )
        for table in TABLES:
            if table not in (NODES, POSTINGS, RULES) and not (types and table is RELATIONS):
                status = await self._conn.execute(
                    f"DELETE FROM semantic.{table.name} WHERE {where}", *args
                )
                deleted += _count(status)
        return deleted

    async def _recount_feedback(self) -> None:
        """Rebuild the feedback counters of the tenants in scope from their reports."""
        if FEEDBACK_EVENTS.file not in self._manifest.files:
            return
        tenants = self._tenants or self._manifest.tenants
        where, args = ("WHERE tenant = ANY($1::text[])", [tenants]) if tenants else ("", [])
        await self._conn.execute(f"DELETE FROM semantic.node_feedback {where}", *args)
        await self._conn.execute(
            "INSERT INTO semantic.node_feedback (tenant, node_id, applied, succeeded,"
            " minutes_total, minutes_reports, last_applied_at)"
            " SELECT tenant, node_id, count(*), count(*) FILTER (WHERE success),"
            " coalesce(sum(minutes_saved), 0), count(minutes_saved), max(occurred_at)"
            f" FROM semantic.feedback_events {where} GROUP BY tenant, node_id"
            " ORDER BY tenant, node_id",
            *args,
        )

    async def _recount_stats(self, tenants: list[str] | None) -> None:
        where, args = ("WHERE tenant = ANY($1::text[])", [tenants]) if tenants else ("", [])
        await self._conn.execute(f"DELETE FROM semantic.keyword_stats {where}", *args)
        await self._conn.execute(
            "INSERT INTO semantic.keyword_stats (tenant, documents, total_length)"
            " SELECT tenant, count(DISTINCT node_id), coalesce(sum(tf), 0)"
            f" FROM semantic.postings {where} GROUP BY tenant",
            *args,
        )

    async def _nodes(self, report: ImportReport) -> None:
        await self._load(NODES.file, "snap_nodes", "semantic.nodes")
        await self._conn.execute(_FATE)
        for row in await self._conn.fetch("SELECT fate, count(*) AS n FROM snap_fate GROUP BY 1"):
            report.nodes[row["fate"]] = row["n"]
        await self._conn.execute(_WRITE_NODES)
        await self._conn.execute(
            "CREATE TEMP TABLE snap_changed ON COMMIT DROP AS SELECT tenant, id FROM snap_fate"
            " WHERE fate IN ('created', 'updated')"
        )
        await self._conn.execute(
            "CREATE TEMP TABLE snap_stats (tenant text, documents bigint, total_length bigint)"
            " ON COMMIT DROP"
        )

    async def _tombstones(self, report: ImportReport) -> None:
        await self._load(TOMBSTONES.file, "snap_node_tombstones", "semantic.node_tombstones")
        status = await self._conn.execute(
            "INSERT INTO semantic.node_tombstones AS t SELECT * FROM snap_node_tombstones"
            " ORDER BY tenant, id ON CONFLICT (tenant, id) DO UPDATE"
            " SET version = EXCLUDED.version, deleted_at = EXCLUDED.deleted_at,"
            " slug = coalesce(EXCLUDED.slug, t.slug)"
            " WHERE EXCLUDED.version > t.version"
            " OR (EXCLUDED.version = t.version AND EXCLUDED.deleted_at > t.deleted_at)"
        )
        changed = _count(status)
        await self._conn.execute(_TOMBSTONED)
        gone = await self._conn.fetchval("SELECT count(*) FROM snap_gone")
        if gone:
            await self._drop_postings("snap_gone")
            for space in await database_spaces(self._conn):
                await self._conn.execute(
                    f"DELETE FROM {vector_table(space.id)} v USING snap_gone g"
                    " WHERE v.tenant = g.tenant AND v.node_id = g.id"
                )
            await self._conn.execute(
                "DELETE FROM semantic.relations r USING snap_gone g WHERE r.tenant = g.tenant"
                " AND (r.source_id = g.id OR r.target_id = g.id)"
            )
            await self._conn.execute(
                "DELETE FROM semantic.rules r USING snap_gone g"
                " WHERE r.tenant = g.tenant AND r.node_id = g.id"
            )
            await self._conn.execute(
                "DELETE FROM semantic.relation_discovery d USING snap_gone g"
                " WHERE d.tenant = g.tenant AND d.node_id = g.id"
            )
            await self._conn.execute(
                "DELETE FROM semantic.nodes n USING snap_gone g"
                " WHERE n.tenant = g.tenant AND n.id = g.id"
            )
        report.tables["node_tombstones"] = changed
        report.tables["nodes_deleted"] = int(gone or 0)

    async def _drop_postings(self, keys: str) -> None:
        """Delete the postings of the nodes in temp table ``keys``; their totals go to
        ``snap_stats`` as negative amounts (the write path's exact statistics)."""
        await self._conn.execute(
            f"""WITH gone AS (
                DELETE FROM semantic.postings p USING {keys} k
                WHERE p.tenant = k.tenant AND p.node_id = k.id RETURNING p.tenant, p.node_id, p.tf)
            INSERT INTO snap_stats SELECT tenant, -count(DISTINCT node_id), -sum(tf)
            FROM gone GROUP BY tenant"""
        )

    async def _postings(self, report: ImportReport) -> None:
        await self._load(POSTINGS.file, "snap_postings", "semantic.postings")
        await self._drop_postings("snap_changed")
        status = await self._conn.execute(
            """WITH added AS (
                INSERT INTO semantic.postings
                SELECT p.* FROM snap_postings p JOIN snap_changed c
                  ON c.tenant = p.tenant AND c.id = p.node_id
                ORDER BY p.tenant, p.term, p.node_id
                RETURNING tenant, node_id, tf)
            INSERT INTO snap_stats SELECT tenant, count(DISTINCT node_id), sum(tf)
            FROM added GROUP BY tenant"""
        )
        del status
        report.tables["postings"] = await self._conn.fetchval(
            "SELECT count(*) FROM snap_postings p JOIN snap_changed c"
            " ON c.tenant = p.tenant AND c.id = p.node_id"
        )
        await self._conn.execute(_STATS)

    async def _relations(self, report: ImportReport) -> None:
        if RELATIONS.file not in self._manifest.files:  # written before relations existed
            return
        await self._load(RELATIONS.file, "snap_relations", "semantic.relations")
        await self._conn.execute(
            "DELETE FROM semantic.relations r USING snap_changed c"
            " WHERE r.tenant = c.tenant AND r.source_id = c.id AND NOT r.discovered"
        )
        status = await self._conn.execute(
            "INSERT INTO semantic.relations AS r SELECT s.* FROM snap_relations s"
            " WHERE NOT EXISTS (SELECT 1 FROM snap_gone g"
            "   WHERE g.tenant = s.tenant AND g.id IN (s.source_id, s.target_id))"
            " AND NOT EXISTS (SELECT 1 FROM snap_fate f WHERE f.tenant = s.tenant"
            "   AND f.id = s.source_id AND f.fate = 'kept')"
            " ORDER BY s.tenant, s.source_id, s.target_id, s.type"
            " ON CONFLICT (tenant, source_id, target_id, type) DO UPDATE SET"
            " strength = EXCLUDED.strength, description = EXCLUDED.description,"
            " discovered = false, created_at = EXCLUDED.created_at,"
            " updated_at = EXCLUDED.updated_at"
            " WHERE r.discovered AND NOT EXCLUDED.discovered"
        )
        report.tables[RELATIONS.name] = _count(status)
        # Discovered relations the snapshot brought: their nodes are examined again.
        await self._conn.execute(
            "UPDATE semantic.relation_discovery d SET recheck = d.recheck + 1"
            " FROM (SELECT DISTINCT tenant, source_id FROM snap_relations WHERE discovered) s"
            " WHERE d.tenant = s.tenant AND d.node_id = s.source_id"
        )

    async def _rules(self, report: ImportReport) -> None:
        if RULES.file not in self._manifest.files:  # written before guardian rules existed
            return
        await self._load(RULES.file, "snap_rules", "semantic.rules")
        await self._conn.execute(
            "DELETE FROM semantic.rules r USING snap_changed c"
            " WHERE r.tenant = c.tenant AND r.node_id = c.id"
        )
        status = await self._conn.execute(
            "INSERT INTO semantic.rules SELECT s.* FROM snap_rules s"
            " WHERE EXISTS (SELECT 1 FROM semantic.nodes n"
            "   WHERE n.tenant = s.tenant AND n.id = s.node_id)"
            " AND NOT EXISTS (SELECT 1 FROM snap_fate f WHERE f.tenant = s.tenant"
            "   AND f.id = s.node_id AND f.fate = 'kept')"
            " ORDER BY s.tenant, s.node_id, s.rule_id"
            " ON CONFLICT (tenant, node_id, rule_id) DO NOTHING"
        )
        report.tables[RULES.name] = _count(status)
        await self._conn.execute(
            "INSERT INTO semantic.rule_sets (tenant)"
            " SELECT DISTINCT tenant FROM snap_rules ORDER BY tenant ON CONFLICT DO NOTHING"
        )

    async def _touch_rule_sets(self) -> None:
        """A new stamp for every tenant in scope: processes read their rules again. The
        rows are locked in tenant order, as the write path does."""
        scope, args = (
            ("WHERE tenant = ANY($1::text[])", [self._tenants]) if self._tenants else ("", [])
        )
        await self._conn.execute(
            "UPDATE semantic.rule_sets s SET stamp = gen_random_uuid(), changed_at = now()"
            f" FROM (SELECT tenant FROM semantic.rule_sets {scope} ORDER BY tenant FOR UPDATE) k"
            " WHERE s.tenant = k.tenant",
            *args,
        )

    async def _vectors(self, report: ImportReport, snapshot_id: int, target: int) -> None:
        table = vector_table(target)
        temp = f"snap_vectors_{int(snapshot_id)}"
        file = vectors_file(snapshot_id)
        await self._load(file, temp, table)
        await self._conn.execute(
            f"DELETE FROM {table} v USING snap_changed c WHERE v.tenant = c.tenant"
            " AND v.node_id = c.id"
        )
        rows = self._manifest.files[file].rows if file in self._manifest.files else 0
        empty = not await self._conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})")
        rebuild = await _detach_hnsw(self._conn, table) if empty and rows >= BULK_ROWS else []
        status = await self._conn.execute(
            f"INSERT INTO {table} SELECT s.* FROM {temp} s"
            " JOIN snap_fate f ON f.tenant = s.tenant AND f.id = s.node_id"
            " WHERE f.fate IN ('created', 'updated', 'unchanged')"
            " ORDER BY s.tenant, s.node_id, s.name, s.chunk"
            " ON CONFLICT (tenant, node_id, name, chunk) DO NOTHING"
        )
        for definition in rebuild:  # one build over every row, not one insertion per row
            await self._conn.execute(definition)
        report.tables[f"vectors_{int(target)}"] = report.tables.get(
            f"vectors_{int(target)}", 0
        ) + _count(status)

    async def _derived(
        self, report: ImportReport, table: Table, mapping: dict[int, int | None]
    ) -> None:
        temp = f"snap_{table.name}"
        await self._load(table.file, temp, f"semantic.{table.name}")
        if "space_id" in table.schema.names:
            pairs = [(k, v) for k, v in mapping.items() if v is not None]
            known, targets = [p[0] for p in pairs], [p[1] for p in pairs]
            mapped = (
                f"(SELECT m.target FROM unnest($1::int[], $2::int[]) AS m (source, target)"
                f" WHERE m.source = {temp}.space_id)"
            )
            if table.name == "users":  # a journey in an unknown space starts over
                await self._conn.execute(
                    f"UPDATE {temp} SET space_id = {mapped},"
                    f" journey_sum = CASE WHEN {mapped} IS NULL THEN NULL ELSE journey_sum END,"
                    f" journey_weight = CASE WHEN {mapped} IS NULL THEN 0 ELSE journey_weight END,"
                    f" journey_at = CASE WHEN {mapped} IS NULL THEN NULL ELSE journey_at END"
                    " WHERE space_id IS NOT NULL",
                    known,
                    targets,
                )
            else:  # centroids of a space not kept are dropped
                await self._conn.execute(
                    f"DELETE FROM {temp} WHERE NOT (space_id = ANY($1::int[]))", known
                )
                await self._conn.execute(f"UPDATE {temp} SET space_id = {mapped}", known, targets)
        key = ", ".join(table.key)
        status = await self._conn.execute(
            f"INSERT INTO semantic.{table.name} SELECT * FROM {temp} ORDER BY {key}"
            f" ON CONFLICT ({key}) DO NOTHING"
        )
        report.tables[table.name] = _count(status)


async def _detach_hnsw(conn: asyncpg.Connection, table: str) -> list[str]:
    """Drop the HNSW indexes of ``table`` (inside the import's transaction); their
    definitions, to create them again once the rows are in."""
    rows = await conn.fetch(
        "SELECT c.oid::regclass::text AS name, pg_get_indexdef(c.oid) AS definition"
        " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_am a ON a.oid = c.relam"
        " WHERE i.indrelid = $1::regclass AND a.amname = 'hnsw' ORDER BY 1",
        table,
    )
    for row in rows:
        await conn.execute(f"DROP INDEX {row['name']}")
    return [row["definition"] for row in rows]


def _count(status: str) -> int:
    """The row count of a command status such as ``INSERT 0 12`` or ``DELETE 3``."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isascii() and tail.isdigit() else 0
