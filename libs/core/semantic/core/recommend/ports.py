"""The protocols recommendations read and write through; a store implements them
(:mod:`semantic.store.postgres` for PostgreSQL).

    RecommendReads -> RecommendSession   what Recommend reads, on one or two sessions
    TrackStore     -> TrackSession       what Track writes, in one transaction
    ArchetypeStore                       users' journeys in, derived archetypes out

A session is one unit of reading (one database connection in the PostgreSQL store); a
Recommend call may hold two at once to read in parallel, never waiting for the second.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from semantic.core.domain import Filter, NodeRecord
from semantic.core.recommend.events import Action, UserEventRecord
from semantic.core.recommend.journey import LoggedEvent, StoredUser
from semantic.core.recommend.tracking import EngagementDelta, UserNodeState, UserUpdate
from semantic.core.recommend.values import (
    CandidateDetails,
    RelatedVia,
    Similar,
    SpaceRef,
    Wanted,
)

Vector = np.ndarray[Any, Any]
NodeKey = tuple[str, str]
"""(tenant, node id)."""
UserKey = tuple[str, str]
"""(tenant, user id)."""


class JourneyLog(Protocol):
    """What rebuilding a journey in another space reads."""

    async def logged_events(self, tenant: str, user_id: str, limit: int) -> list[LoggedEvent]:
        """The user's ``limit`` latest logged events, newest first."""
        ...

    async def node_vectors(
        self, space: SpaceRef, keys: Set[NodeKey], name: str
    ) -> dict[NodeKey, Vector]:
        """Each node's vector ``name`` in ``space`` (the mean of its chunks); nodes without
        one are left out."""
        ...


@dataclass(frozen=True)
class UserNode:
    """A user's flags on one node (what excluded it from recommendations)."""

    node_id: str
    seen: bool
    converted: bool
    dismissed: bool


@dataclass(frozen=True)
class UserRead:
    """What a Recommend call reads of its user first (one read)."""

    row: StoredUser | None
    """The user's row; None for a user never tracked."""
    excluded: list[str]
    """Nodes to exclude: dismissed, converted unless asked, seen when asked (of the
    latest 5,000 the user acted on)."""
    conflicts: tuple[tuple[str, str], ...] = ()
    """(node, converted node) for each node with a ``conflicts`` relation to a node the
    user converted on."""
    centroids: list[tuple[str, Vector]] | None = None
    """(label, centroid) of the tenant's derived archetypes, when asked for and the user
    is known but has no archetype of their own; None otherwise."""


class RecommendSession(JourneyLog, Protocol):
    """The reads of one Recommend call."""

    async def user(
        self,
        tenant: str,
        user_id: str,
        *,
        exclude_seen: bool,
        include_converted: bool,
        centroids_in: SpaceRef | None = None,
    ) -> UserRead:
        """The user's row, exclusions and conflicts, and with ``centroids_in`` the
        derived archetypes' centroids in that space when the user has no archetype
        (:class:`UserRead`)."""
        ...

    async def user_nodes(
        self, tenant: str, user_id: str, node_ids: Sequence[str]
    ) -> list[UserNode]:
        """The user's flags on these nodes (nodes the user never acted on left out); read
        by the recommendation debugger only."""
        ...

    async def resolve(
        self, tenant: str, ids: Sequence[str], slugs: Sequence[str]
    ) -> list[tuple[str, str | None]]:
        """(id, slug) of the tenant's nodes named by id or by slug."""
        ...

    async def nearest(
        self,
        space: SpaceRef,
        tenant: str,
        vector: Vector,
        *,
        vector_name: str,
        flt: Filter,
        limit: int,
        wanted: Wanted | None = None,
    ) -> tuple[list[str], dict[str, CandidateDetails]]:
        """Ids of the ``limit`` nodes nearest to ``vector`` that pass ``flt``, nearest
        first, and with ``wanted`` the details of those the same read could give (the
        caller reads the others with :meth:`details`)."""
        ...

    async def popular(
        self,
        space: SpaceRef,
        tenant: str,
        flt: Filter,
        limit: int,
        wanted: Wanted,
    ) -> tuple[list[tuple[str, bool]], float, dict[str, CandidateDetails]]:
        """((node id, from the archetype) of at most ``limit`` of ``wanted.archetype``'s and
        of the tenant's most popular nodes that pass ``flt``, archetype's first; the
        archetype's best score; their details as ``wanted``)."""
        ...

    async def details(
        self, space: SpaceRef, tenant: str, ids: Sequence[str], wanted: Wanted
    ) -> dict[str, CandidateDetails]:
        """What scoring needs of each node, as ``wanted`` (deleted nodes left out)."""
        ...

    async def complete(
        self, space: SpaceRef, tenant: str, vector_name: str, ids: Sequence[str]
    ) -> dict[str, tuple[NodeRecord, Vector | None]]:
        """The full node and its unit vector, by id (deleted nodes left out)."""
        ...

    async def journey_items(
        self, space: SpaceRef, tenant: str, user_id: str, vector_name: str, limit: int
    ) -> list[tuple[Similar, Vector]]:
        """The user's ``limit`` latest nodes acted on more than by an impression, with their
        unit vectors (nodes without one are left out)."""
        ...

    async def engagement_totals(self, tenant: str) -> tuple[float, float]:
        """(clicks + likes + conversions, impressions) over the tenant's nodes."""
        ...

    async def related(
        self, tenant: str, user_id: str, flt: Filter, recent: int
    ) -> tuple[RelatedVia, ...]:
        """The nodes passing ``flt`` that the user's ``recent`` latest nodes (acted on more
        than by an impression) lead to by a client relation (``prerequisite`` from them,
        ``follows`` to them); only nodes that exist."""
        ...


class RecommendReads(Protocol):
    """Where Recommend's sessions come from."""

    def session(self) -> AbstractAsyncContextManager[RecommendSession]:
        """A session (waits for one)."""
        ...

    def spare(self) -> AbstractAsyncContextManager[RecommendSession | None]:
        """A second session if one is idle now, else None (never waits: a call holding one
        session never waits for another)."""
        ...


class TrackSession(JourneyLog, Protocol):
    """The reads and writes of one Track call."""

    async def resolve_events(self, events: Sequence[UserEventRecord]) -> list[str | None]:
        """Each event's node id (from its id or slug), None where the node does not exist."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[None]:
        """All writes inside commit together or not at all."""
        ...

    async def log_events(self, events: Sequence[UserEventRecord]) -> set[tuple[str, str]]:
        """Append the events to the log; returns the (tenant, event id) newly logged."""
        ...

    async def add_engagement(self, deltas: Sequence[EngagementDelta]) -> None:
        """Add the deltas to the nodes' engagement."""
        ...

    async def merge_user_nodes(self, states: Sequence[UserNodeState]) -> None:
        """Merge the states into the stored ones (flags OR-ed, strongest and time max-ed)."""
        ...

    async def lock_users(self, keys: Sequence[UserKey]) -> dict[UserKey, StoredUser]:
        """The stored users among ``keys``, locked until the transaction ends."""
        ...

    async def save_users(self, updates: Sequence[UserUpdate]) -> None:
        """Insert or replace the users' rows."""
        ...

    async def add_archetype_scores(self, scores: Mapping[tuple[str, str, str], float]) -> None:
        """Add to the archetypes' priors, keyed (tenant, archetype, node id)."""
        ...


class TrackStore(Protocol):
    """Where Track's sessions come from."""

    def session(self) -> AbstractAsyncContextManager[TrackSession]:
        """A session (waits for one)."""
        ...


@dataclass(frozen=True)
class DerivedSet:
    """What :meth:`ArchetypeStore.replace_derived` stores for one tenant."""

    prefix: str  # of every derived label (reserved for them)
    labels: Sequence[str]  # one per cluster
    centroids: Vector  # [clusters, dim], unit rows
    members: Sequence[int]  # users per cluster
    assignments: Sequence[tuple[str, str]]  # (user id, label) of each clustered user
    weights: Mapping[Action, float]  # journey weight of VIEW, CLICK, LIKE and CONVERT


class ArchetypeStore(Protocol):
    """The users' journeys and the derived archetypes made of them."""

    async def tenants(self, space: SpaceRef) -> list[str]:
        """Tenants with users whose journeys are in ``space``."""
        ...

    async def journeys(
        self, space: SpaceRef, tenant: str, min_events: int
    ) -> list[tuple[str, Vector]]:
        """(user id, journey sum) of the tenant's users with at least ``min_events`` events,
        a journey in ``space`` and no archetype given by a client."""
        ...

    async def replace_derived(self, space: SpaceRef, tenant: str, derived: DerivedSet) -> None:
        """In one transaction: the tenant's derived centroids in ``space`` replaced, the
        users assigned, the derived archetypes' priors rebuilt from the event log."""
        ...
