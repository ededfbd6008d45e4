"""Is this database consistent right now? The checks behind Admin CheckConsistency.

Each check reads one thing through the :class:`~semantic.core.ports.ConsistencyStore`
port and turns it into a :class:`Check`: passed or not, one sentence, how many things
offend, a few examples and the remedy. The checks, in the order they are reported:

    schema_current       every migration this build ships is applied and unchanged
                         (and the database records none this build does not ship)
    alias_consistent     exactly one space is in state active, the ``active`` alias
                         names it, its vector table exists and its column has the
                         space's dimension
    nodes_have_vectors   every node with text has a vector row in the checked space
    no_stale_vectors     no computed vector was made from another content hash
    no_orphan_vectors    no vector row outlives its node
    spaces_tables_exist  every space not retired has its vector table and HNSW index

The three vector checks run on one space (the active one unless named); they use the
heal backlog's definitions, so Heal is the remedy of all three. The use case only reads:
it never fixes anything itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from semantic.core.spaces import ActiveSpaces, NoActiveSpace, Space

if TYPE_CHECKING:
    from semantic.core.ports import ConsistencyStore

DEFAULT_SAMPLE_LIMIT = 10
"""Examples per failed check when the request does not say."""
MAX_SAMPLE_LIMIT = 100
"""Most examples a request may ask for per check."""


class Remedy(StrEnum):
    """What fixes a failed check (the Admin RPC or operation to run)."""

    NONE = "none"
    HEAL = "heal"
    REINDEX = "reindex"
    ROLLBACK = "rollback"
    MIGRATE = "migrate"


@dataclass(frozen=True)
class Check:
    """The result of one check."""

    name: str
    ok: bool
    summary: str
    count: int = 0
    examples: tuple[str, ...] = ()
    remedy: Remedy = Remedy.NONE


@dataclass(frozen=True)
class Offenders:
    """How many things fail a check, and the first few of them (in key order)."""

    count: int
    examples: tuple[str, ...]


@dataclass(frozen=True)
class MigrationState:
    """A migration as shipped by this build and as recorded by the database."""

    version: int
    name: str
    recorded_sha256: str | None
    shipped_sha256: str | None
    applied_at: datetime | None

    @property
    def matches(self) -> bool:
        """Applied, shipped, and the file has not changed since."""
        return self.recorded_sha256 is not None and self.recorded_sha256 == self.shipped_sha256


@dataclass(frozen=True)
class SchemaState:
    """Migrations (version order) and the schema objects a bootstrap would create."""

    migrations: tuple[MigrationState, ...]
    gaps: tuple[str, ...]


@dataclass(frozen=True)
class AliasState:
    """The ``active`` alias, the spaces in state active, and the aliased space's table."""

    alias_space_id: int | None
    active_state_ids: tuple[int, ...]
    space_dim: int | None
    table_exists: bool
    column_dim: int | None


@dataclass(frozen=True)
class SpaceTables:
    """Whether a registered space has its vector table and HNSW index."""

    space_id: int
    state: str
    has_table: bool
    has_hnsw: bool


@dataclass(frozen=True)
class ConsistencyReport:
    """Every check, the migrations, and the space whose vectors were checked."""

    checks: tuple[Check, ...]
    migrations: tuple[MigrationState, ...]
    space: Space | None
    checked_at: datetime

    @property
    def ok(self) -> bool:
        """Every check passed."""
        return all(c.ok for c in self.checks)

    @property
    def schema_version(self) -> str:
        """File name of the highest applied migration; empty when none is."""
        applied = [m for m in self.migrations if m.recorded_sha256 is not None]
        return migration_file(applied[-1]) if applied else ""


def migration_file(migration: MigrationState) -> str:
    """``NNN_name.sql``, the name migrations are known by."""
    return f"{migration.version:03d}_{migration.name}.sql"


class ConsistencyChecker:
    """Runs the checks (module doc) through the store port."""

    def __init__(self, store: ConsistencyStore, spaces: ActiveSpaces) -> None:
        self._store = store
        self._spaces = spaces

    async def check(self, space_id: int | None, sample_limit: int) -> ConsistencyReport:
        """Every check; ``space_id`` None checks the active space's vectors. NotFound for
        an unknown ``space_id``; a missing active space is a failed check, not an error."""
        limit = sample_limit or DEFAULT_SAMPLE_LIMIT
        schema = await self._store.schema()
        alias = await self._store.alias()
        space: Space | None
        try:
            space = await self._spaces.space(space_id) if space_id else await self._active()
        except NoActiveSpace:
            space = None
        tables = await self._store.space_tables()
        vector_checks = await self._vector_checks(space, tables, limit)
        return ConsistencyReport(
            checks=(
                schema_check(schema, limit),
                alias_check(alias),
                *vector_checks,
                tables_check(tables, limit),
            ),
            migrations=schema.migrations,
            space=space,
            checked_at=datetime.now(UTC),
        )

    async def _active(self) -> Space:
        """The active space read now (the check must not answer from a cache)."""
        return await self._spaces.registry.active()

    async def _vector_checks(
        self, space: Space | None, tables: list[SpaceTables], limit: int
    ) -> tuple[Check, ...]:
        names = ("nodes_have_vectors", "no_stale_vectors", "no_orphan_vectors")
        if space is None:
            why = "not checked: there is no active space (see alias_consistent)"
            return tuple(Check(n, False, why, remedy=Remedy.ROLLBACK) for n in names)
        if not any(t.space_id == space.id and t.has_table for t in tables):
            why = f"not checked: the vector table of space {space.id} is missing"
            return tuple(Check(n, False, why, remedy=Remedy.REINDEX) for n in names)
        missing = await self._store.missing_vectors(space, limit)
        stale = await self._store.stale_vectors(space, limit)
        orphans = await self._store.orphan_vectors(space, limit)
        at = f"in space {space.id}"
        return (
            _counted(
                names[0],
                missing,
                f"every node with text has a vector {at}",
                f"node(s) with text have no vector {at}",
            ),
            _counted(
                names[1],
                stale,
                f"every computed vector {at} matches its node's content",
                f"node(s) have vectors {at} made from older content",
            ),
            _counted(
                names[2],
                orphans,
                f"every vector row {at} belongs to a node",
                f"vector row(s) {at} belong to no node",
            ),
        )


def _counted(name: str, found: Offenders, fine: str, problem: str) -> Check:
    """A vector check: passed when nothing offends, else healed."""
    if found.count == 0:
        return Check(name, True, fine)
    return Check(name, False, f"{found.count} {problem}", found.count, found.examples, Remedy.HEAL)


def schema_check(schema: SchemaState, limit: int) -> Check:
    """``schema_current`` from the ledger and the shipped files."""
    name = "schema_current"
    if schema.gaps:
        return Check(
            name,
            False,
            f"the schema is incomplete: {', '.join(schema.gaps)} missing",
            len(schema.gaps),
            schema.gaps[:limit],
            Remedy.MIGRATE,
        )
    pending = [m for m in schema.migrations if m.recorded_sha256 is None]
    changed = [
        m for m in schema.migrations if m.recorded_sha256 and m.shipped_sha256 and not m.matches
    ]
    unknown = [m for m in schema.migrations if m.shipped_sha256 is None]
    bad = pending + changed + unknown
    if not bad:
        return Check(name, True, f"all {len(schema.migrations)} migrations applied and unchanged")
    parts = [
        f"{len(group)} {what}"
        for group, what in (
            (pending, "not applied"),
            (changed, "changed after they were applied (checksum differs)"),
            (unknown, "recorded but not shipped with this build"),
        )
        if group
    ]
    examples = tuple(migration_file(m) for m in sorted(bad, key=lambda m: m.version))
    return Check(
        name, False, "migrations " + "; ".join(parts), len(bad), examples[:limit], Remedy.MIGRATE
    )


def alias_check(alias: AliasState) -> Check:
    """``alias_consistent`` from the alias row, the space states and the table."""
    name = "alias_consistent"
    ids = tuple(str(i) for i in alias.active_state_ids)
    if alias.alias_space_id is None:
        return Check(name, False, "the active alias names no space", len(ids), ids, Remedy.ROLLBACK)
    target = str(alias.alias_space_id)
    if alias.active_state_ids != (alias.alias_space_id,):
        return Check(
            name,
            False,
            f"the active alias names space {target} but the spaces in state active are "
            f"[{', '.join(ids)}]",
            max(1, len(ids)),
            tuple(dict.fromkeys((target, *ids))),
            Remedy.ROLLBACK,
        )
    if not alias.table_exists:
        return Check(
            name,
            False,
            f"the vector table of active space {target} is missing",
            1,
            (target,),
            Remedy.REINDEX,
        )
    if alias.column_dim != alias.space_dim:
        return Check(
            name,
            False,
            f"active space {target} has dimension {alias.space_dim} but its vector column "
            f"has {alias.column_dim}",
            1,
            (target,),
            Remedy.REINDEX,
        )
    return Check(
        name, True, f"one active space ({target}), its table with dimension {alias.space_dim}"
    )


def tables_check(tables: list[SpaceTables], limit: int) -> Check:
    """``spaces_tables_exist`` over every space not retired."""
    name = "spaces_tables_exist"
    live = [t for t in tables if t.state != "retired"]
    bad = [t for t in live if not (t.has_table and t.has_hnsw)]
    if not bad:
        return Check(
            name, True, f"all {len(live)} spaces not retired have their table and HNSW index"
        )
    detail = ", ".join(
        f"{t.space_id} ({'no table' if not t.has_table else 'no HNSW index'})" for t in bad[:limit]
    )
    examples = tuple(str(t.space_id) for t in bad)
    return Check(
        name,
        False,
        f"{len(bad)} space(s) lack their table or index: {detail}",
        len(bad),
        examples[:limit],
        Remedy.REINDEX,
    )
