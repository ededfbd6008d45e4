"""Guardian rule use cases: write, remove and read rules, and check a text against a
tenant's rules within a time budget (README_vector.md, "Guardian rules").

A check runs on a thread of the service's own pool (one thread per permit, so a check never
waits for a thread and the event loop keeps serving). It waits for the matching at most
until the budget runs out, then answers with the rules searched so far
(``budget_exceeded``); the search under way finishes in the background (RE2 is linear in
the text) and holds its permit until then. A tenant's rules are compiled once and kept
with the tenant's stamp (``RuleStore.stamp``, one key lookup per check); a write anywhere,
by any process, changes the stamp and the next check compiles them again.
"""

from __future__ import annotations

import asyncio
import heapq
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from semantic.common.errors import DependencyUnavailable, Overloaded
from semantic.core.rule_matching import CompiledRules, Found, Scan, TextIndex
from semantic.core.rules import (
    RANK,
    CheckQuery,
    CheckResult,
    NodeRule,
    Rule,
    RuleStore,
    RuleWrite,
    Violation,
)

MAX_MATCH_CHARS = 200
"""Characters of the matched text a violation carries."""
CACHED_TENANTS = 64
"""Tenants whose compiled rules a process keeps (least recently checked go first)."""


class _Permits:
    """Checks running at once (their matching included, even past their budget)."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._lock = threading.Lock()

    def take(self) -> None:
        with self._lock:
            if self._free <= 0:
                raise Overloaded("guardian checks")
            self._free -= 1

    def give(self) -> None:
        with self._lock:
            self._free += 1


class RuleService:
    """Write, remove, read and check guardian rules.

    A check runs on a thread of its own pool (one thread per permit): the event loop keeps
    serving while a text is searched. It waits for the matching at most until the budget
    runs out, then answers with the rules checked so far; the search in progress finishes
    in the background (re2 is linear in the text) and holds its permit until then.
    """

    def __init__(self, store: RuleStore, *, max_rules: int = 50, concurrency: int = 4) -> None:
        self._store = store
        self._max_rules = max_rules
        self._permits = _Permits(concurrency)
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="check")
        self._cache: OrderedDict[str, tuple[str | None, CompiledRules]] = OrderedDict()

    async def write(
        self, tenant: str, node_id: str, rules: Sequence[Rule], *, replace: bool
    ) -> RuleWrite:
        """Create or update ``rules`` of the node (``replace``: remove its others)."""
        return await self._store.write(
            tenant, node_id, rules, replace=replace, max_rules=self._max_rules
        )

    async def remove(self, tenant: str, node_id: str, rule_ids: Sequence[str]) -> int:
        """Remove rules of the node by id."""
        return await self._store.remove(tenant, node_id, rule_ids)

    async def of_nodes(self, tenant: str, ids: Sequence[str]) -> dict[str, list[Rule]]:
        """Each node's rules."""
        return await self._store.of_nodes(tenant, ids) if ids else {}

    async def check(self, query: CheckQuery) -> CheckResult:
        """Every match of the rules that apply, in position order, within the budget."""
        started = time.monotonic()
        scan = Scan(started + query.budget_s)
        self._permits.take()
        try:
            compiled, rows = await self._compiled(query.tenant)
            if compiled is not None:  # known before the budget can run out
                scan.choose(_chosen(compiled, query))
            work = asyncio.get_running_loop().run_in_executor(
                self._pool, _match, compiled, rows, query, scan
            )
        except RuntimeError as exc:  # the pool is shut down
            self._permits.give()
            raise DependencyUnavailable("search", "shutting down") from exc
        except BaseException:
            self._permits.give()
            raise
        work.add_done_callback(lambda done: self._finished(query.tenant, done, rows))
        completed = False
        try:
            await asyncio.wait_for(asyncio.shield(work), max(0.0, scan.deadline - time.monotonic()))
            completed = True
        except TimeoutError:
            pass
        finally:
            scan.stop()  # a call timed out or cancelled stops its matching too
        return await self._result(query, scan, started, completed)

    async def close(self) -> None:
        """Stop taking checks; matching under way is left to finish."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _compiled(
        self, tenant: str
    ) -> tuple[CompiledRules | None, tuple[str | None, list[NodeRule]] | None]:
        """The tenant's compiled rules when still current, else its rules to compile."""
        cached = self._cache.get(tenant)
        if cached is not None and cached[0] == await self._store.stamp(tenant):  # never None
            self._cache.move_to_end(tenant)
            return cached[1], None
        return None, await self._store.tenant_rules(tenant)

    def _finished(
        self,
        tenant: str,
        done: asyncio.Future[CompiledRules],
        rows: tuple[str | None, list[NodeRule]] | None,
    ) -> None:
        self._permits.give()
        if rows is None or done.cancelled() or done.exception() is not None:
            return
        if rows[0] is None:  # rules never written (or only by an import): not kept
            self._cache.pop(tenant, None)
            return
        self._cache[tenant] = (rows[0], done.result())
        self._cache.move_to_end(tenant)
        while len(self._cache) > CACHED_TENANTS:
            self._cache.popitem(last=False)

    async def _result(
        self, query: CheckQuery, scan: Scan, started: float, completed: bool
    ) -> CheckResult:
        found, checked, in_scope, text = scan.snapshot()
        kept, truncated = best_matches(found, query.max_violations)
        titles = await self._store.titles(query.tenant, sorted({f.rule.node_id for f in kept}))
        violations = _violations(kept, text, titles) if text is not None else []
        return CheckResult(
            violations=violations,
            rules_in_scope=in_scope,
            rules_checked=checked,
            truncated=truncated,
            budget_exceeded=scan.budget_exceeded or not completed,
            elapsed_ms=round((time.monotonic() - started) * 1000),
        )


def best_matches(found: Sequence[Found], limit: int) -> tuple[list[Found], bool]:
    """The first ``limit`` matches by position, then most severe, node id and rule id; and
    whether there were more."""
    kept = heapq.nsmallest(
        limit,
        found,
        key=lambda f: (f.start, -RANK[f.rule.rule.severity], f.rule.node_id, f.rule.rule.id),
    )
    return kept, len(found) > limit


def _match(
    compiled: CompiledRules | None,
    rows: tuple[str | None, list[NodeRule]] | None,
    query: CheckQuery,
    scan: Scan,
) -> CompiledRules:
    """On a pool thread: compile when needed, then search the text (see ``Scan``)."""
    if compiled is None:
        compiled = CompiledRules([(r.node_id, r.rule) for r in (rows[1] if rows else [])])
        scan.choose(_chosen(compiled, query))
    scan.run(compiled, query.text, query.max_violations)
    return compiled


def _chosen(compiled: CompiledRules, query: CheckQuery) -> list[int]:
    """The rules (indexes into ``compiled.entries``) the check runs."""
    return [i for i, entry in enumerate(compiled.entries) if query.applies(entry.rule)]


def _violations(
    kept: Sequence[Found], text: TextIndex, titles: Mapping[str, str]
) -> list[Violation]:
    positions = text.positions([f.start for f in kept] + [f.end for f in kept])
    out = []
    for f in kept:
        line, column = positions[f.start]
        end_line, end_column = positions[f.end]
        rule = f.rule.rule
        out.append(
            Violation(
                rule_id=rule.id,
                node_id=f.rule.node_id,
                node_title=titles.get(f.rule.node_id, ""),
                severity=rule.severity,
                action=rule.action,
                message=rule.message,
                line=line,
                column=column,
                end_line=end_line,
                end_column=end_column,
                match=text.excerpt(f.start, f.end, MAX_MATCH_CHARS),
            )
        )
    return out
