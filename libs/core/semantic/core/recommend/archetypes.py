"""Derived archetypes: k-means over users' journey vectors, per tenant and space.

Users who never got an archetype from a client (``UserEvent.archetype``) are clustered
by their journey direction (cosine k-means, k-means++ seeding, fixed seed). Each cluster
becomes an archetype labelled ``derived_<n>`` (labels starting with ``derived_`` are
reserved for this), with a centroid that Recommend uses to place users who were not
clustered yet, and a prior rebuilt from its members' positive events. Client-given
archetypes are never overwritten. Runs from the indexer's heal loop and from
``semantic archetypes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog

from semantic.core.recommend.clustering import kmeans, unit_rows
from semantic.core.recommend.events import Action, TrackConfig
from semantic.core.recommend.ports import ArchetypeStore, DerivedSet
from semantic.core.recommend.values import SpaceRef

log = structlog.get_logger(__name__)
PREFIX = "derived_"
_POSITIVE = (Action.VIEW, Action.CLICK, Action.LIKE, Action.CONVERT)


@dataclass(frozen=True)
class DerivedArchetypes:
    """What one derivation did for one tenant."""

    tenant: str
    users: int
    clusters: int


def cluster_journeys(
    journeys: Sequence[tuple[str, np.ndarray[Any, Any]]], k: int, config: TrackConfig
) -> tuple[int, DerivedSet | None]:
    """(users clustered, the derived set or None): users with a zero journey are left
    out; at most ``k`` clusters and at least two users per cluster, none below two."""
    vectors = np.asarray([v for _, v in journeys], np.float32)
    units, keep = unit_rows(vectors)
    users = [user for (user, _), ok in zip(journeys, keep, strict=True) if ok]
    clusters = min(k, len(users) // 2)
    if clusters < 2:
        return len(users), None
    centroids, labels = kmeans(units, clusters)
    names = [f"{PREFIX}{i}" for i in range(clusters)]
    return len(users), DerivedSet(
        prefix=PREFIX,
        labels=names,
        centroids=centroids,
        members=[int((labels == i).sum()) for i in range(clusters)],
        assignments=[(user, names[int(label)]) for user, label in zip(users, labels, strict=True)],
        weights={action: config.weights[action] for action in _POSITIVE},
    )


class ArchetypeRefresh:
    """Derives every tenant's archetypes in a space (see the module doc)."""

    def __init__(self, store: ArchetypeStore, config: TrackConfig) -> None:
        self._store = store
        self._config = config

    async def derive(self, space: SpaceRef, *, k: int, min_events: int) -> list[DerivedArchetypes]:
        """Cluster every tenant's users of ``space``; returns what was done per tenant."""
        return [
            await self.derive_tenant(space, tenant, k=k, min_events=min_events)
            for tenant in await self._store.tenants(space)
        ]

    async def derive_tenant(
        self, space: SpaceRef, tenant: str, *, k: int, min_events: int
    ) -> DerivedArchetypes:
        """Cluster one tenant's users of ``space``."""
        journeys = await self._store.journeys(space, tenant, min_events)
        users, derived = cluster_journeys(journeys, k, self._config)
        if derived is None:
            return DerivedArchetypes(tenant, users, 0)
        await self._store.replace_derived(space, tenant, derived)
        clusters = len(derived.labels)
        log.info("archetypes_derived", tenant=tenant, users=users, clusters=clusters)
        return DerivedArchetypes(tenant, users, clusters)
