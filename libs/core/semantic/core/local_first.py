"""Local-first dense search: candidates from the local index, what changed from PostgreSQL.

While PostgreSQL is reachable and the local index is current, a dense search (Search, and
Nearest once it has the node's vector from PostgreSQL) with one vector name and a filter the
index can evaluate takes its candidates from the index (a few times the page's size, with
the distances the index computes from its copies of their vectors), and one PostgreSQL
statement reads the nodes its change log names since the index's last sync (scored exactly
from their current vectors, the filter applied) and the rows of the page
(``Retrieval.dense_candidates``). A candidate the log does not name is as the index holds
it; every other node is read as it is now: a node written a moment ago is a candidate
through the log, a node deleted is gone, a node changed is scored and shown as it is now.

PostgreSQL's HNSW index scan answers instead while more than ``max_busy`` other dense
searches are under way in this process (the graph search holds the event loop; under
concurrent load PostgreSQL's backends, on their own cores, serve more searches a second),
when the index is not ready, follows another space or has not synced since this process
started, when a tenant or filter holds too small a share of the index for the graph to find
its nodes, when the log cannot vouch for the index (made anew, truncated, or too many
changes since the sync), and when the rows the page needs are not there. Each case is
counted in ``semantic_local_first_searches_total{outcome}``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from prometheus_client import Counter

from semantic.core.degraded import DegradedReads, unsupported_parts
from semantic.core.domain import DEFAULT_VECTOR, DenseHit, SearchQuery
from semantic.core.ports import Retrieval
from semantic.core.spaces import Space

MAX_WANTED = 200
"""Deeper pages (offset + top_k) go to PostgreSQL's index scan: the graph would be asked
for thousands of chunks and the statement for as many rows."""
OUTCOMES = Counter(
    "semantic_local_first_searches_total",
    "Dense searches that tried the local index's candidates first, by outcome: answered, or"
    " why the HNSW index scan answered instead (busy, unsupported, no_candidates, changes,"
    " too_few)",
    ["outcome"],
)


class LocalFirst:
    """Dense searches of one SearchService, local-first when they can be (module doc)."""

    def __init__(self, reads: DegradedReads, retrieval: Retrieval, *, max_busy: int) -> None:
        self._reads = reads
        self._retrieval = retrieval
        self._max_busy = max_busy
        self._busy = 0
        """Dense searches under way in this process, whichever path answers them."""

    async def dense(
        self,
        space: Space,
        query: SearchQuery,
        vector: np.ndarray[Any, Any],
        wanted: int,
        attach: int,
    ) -> list[DenseHit]:
        """The ``wanted`` nearest nodes (node rows attached after ``attach`` hits): from the
        local index's candidates when it can answer, else from PostgreSQL's index scan."""
        self._busy += 1
        try:
            found = await self._answer(space, query, vector, wanted, attach)
            if found is None:
                found = await self._retrieval.dense(
                    space, query, vector, wanted, attach_after=attach
                )
            return found
        finally:
            self._busy -= 1

    async def _answer(
        self,
        space: Space,
        query: SearchQuery,
        vector: np.ndarray[Any, Any],
        wanted: int,
        attach: int,
    ) -> list[DenseHit] | None:
        """The local-first answer; None when it cannot be given (counted by reason)."""
        if self._busy > self._max_busy + 1:  # this search counts itself
            OUTCOMES.labels("busy").inc()
            return None
        targets = query.targets
        if len(targets) > 1 or unsupported_parts(query.filter) or wanted > MAX_WANTED:
            OUTCOMES.labels("unsupported").inc()
            return None
        name = targets[0].name if targets else DEFAULT_VECTOR
        candidates = self._reads.candidates(
            space, query.tenant, vector, name=name, flt=query.filter, limit=wanted
        )
        if candidates is None:
            OUTCOMES.labels("no_candidates").inc()
            return None
        hits = await self._retrieval.dense_candidates(
            space, query, vector, wanted, candidates, attach_after=attach
        )
        if hits is None:
            OUTCOMES.labels("changes").inc()
            return None
        if len(hits) < wanted and not candidates.complete:
            # Candidates gone or filtered out since the index's sync: the index scan knows.
            OUTCOMES.labels("too_few").inc()
            return None
        OUTCOMES.labels("answered").inc()
        return hits
