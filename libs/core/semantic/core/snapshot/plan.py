"""The pure decisions of an import: schema compatibility, where a snapshot space's vectors
go, which tenants a replace clears, and the import's report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from semantic.core.snapshot.manifest import Manifest, SnapshotInvalid, SpaceEntry

_USABLE = ("active", "ready", "building")


def check_schema(snapshot_schema: str, applied: Sequence[str]) -> None:
    """Refuse a snapshot whose schema the database does not have.

    ``applied`` are the database's applied migrations (``NNN_name``) in order. Migrations
    only ever add (tables, columns with defaults, indexes), so a database whose ledger
    holds the snapshot's last migration has every table and column the snapshot has: the
    snapshot is compatible when its schema version is the database's latest or an older
    one of its ledger. A snapshot from a newer schema (or an unknown one) is refused:
    upgrade this installation first (``semantic migrate`` with the newer release).
    """
    if not applied:
        raise SnapshotInvalid("the database has no schema yet: run `semantic migrate` first")
    if snapshot_schema not in applied:
        raise SnapshotInvalid(
            f"the snapshot's schema {snapshot_schema!r} is not in this database's migrations "
            f"(latest {applied[-1]!r}): a newer or foreign schema; upgrade first"
        )


@dataclass(frozen=True)
class DbSpace:
    """An embedding space of the target database."""

    id: int
    model_id: str
    model_sha256: str
    dim: int
    version: int
    state: str
    active: bool


def map_spaces(
    snapshot: Sequence[SpaceEntry], database: Sequence[DbSpace], *, reembed: bool
) -> tuple[dict[int, int | None], list[SpaceEntry]]:
    """Which database space receives each snapshot space's vectors (None: none, the nodes
    are re-embedded by a heal of the active space), and the snapshot spaces to create.

    A snapshot space matches a database space of the same model id, sha256 and dimension
    (the active one first, else the newest usable version). When the database has no
    space at all (a fresh installation), the snapshot's spaces are created as they were,
    the snapshot's active space becoming active. ``reembed`` keeps no vector at all.
    """
    if reembed:
        return {s.id: None for s in snapshot}, []
    if not database:
        return {}, sorted(snapshot, key=lambda s: not s.active)
    mapping: dict[int, int | None] = {}
    for entry in snapshot:
        same = [
            d
            for d in database
            if (d.model_id, d.model_sha256, d.dim)
            == (entry.model_id, entry.model_sha256, entry.dim)
            and d.state in _USABLE
        ]
        same.sort(key=lambda d: (d.active, d.version), reverse=True)
        mapping[entry.id] = same[0].id if same else None
    return mapping, []


def replace_scope(manifest: Manifest, tenants: Sequence[str] | None) -> list[str] | None:
    """The tenants a ``replace`` import clears first: those asked for, else the export's
    tenant filter, else every tenant (None)."""
    if tenants:
        return sorted(set(tenants))
    if manifest.tenants:
        return sorted(set(manifest.tenants))
    return None


@dataclass
class ImportReport:
    """What an import did, per table: rows ``changed`` (written or deleted) and, for
    nodes, the fate of each snapshot node."""

    mode: str
    nodes: dict[str, int] = field(
        default_factory=lambda: {"created": 0, "updated": 0, "unchanged": 0, "kept": 0}
    )
    tables: dict[str, int] = field(default_factory=dict)
    replaced: int = 0
    spaces: dict[int, int | None] = field(default_factory=dict)
    heal_needed: bool = False

    @property
    def changed(self) -> int:
        """Rows written or deleted in total; 0 when the import changed nothing."""
        return (
            self.nodes["created"]
            + self.nodes["updated"]
            + sum(self.tables.values())
            + self.replaced
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready counts."""
        return {
            "mode": self.mode,
            "changed": self.changed,
            "nodes": dict(self.nodes),
            "tables": dict(self.tables),
            "replaced_rows": self.replaced,
            "spaces": {str(k): v for k, v in self.spaces.items()},
            "heal_needed": self.heal_needed,
        }
