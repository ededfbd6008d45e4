"""Token-budget micro-batching: many callers' texts merged into length-bucketed batches.

Callers submit encoded texts and await one vector each. ``workers`` loops each take a
batch and run the model on a worker thread, never on the event loop. While another
batch is running, a loop waits for its batch to fill up to the token budget (padded
cost: texts x longest text) or until ``max_wait_s`` has passed since the oldest pending
text arrived, whichever comes first; when nothing else runs it starts at once (waiting
would only idle the CPU and add latency). While every worker is busy, texts accumulate,
so batches grow with load. A batch is
built around the oldest pending text from its neighbours in length order among the texts
that arrived soon after it (``BatchPolicy.window_texts``), so texts of similar length are
padded together, nothing starves, and requests are answered about in arrival order. When
``max_pending`` texts are already waiting, new submissions fail at once with
``Overloaded``.

With several ``workers``, a batch that starts while another runs (or while texts are left
waiting for the next one) runs through ``infer_shared``; one that runs alone through
``infer``, unless it is small (``BatchPolicy.small_batch_tokens``: a query or two on a
graph whose small calls do not speed up with threads). The embedder gives the two
different onnxruntime sessions: all threads on a lone batch (latency), one thread per
batch side by side (throughput: no thread waits on
another inside a batch, and on a machine shared with other processes a preempted thread
stalls only its own batch).

A batch then runs as one or more model calls (:func:`split_by_length`): its texts, in
length order, are cut into runs that minimise the padded word-pieces plus a fixed cost per
call (``call_cost_tokens``), each run at most ``group_tokens`` padded word-pieces. With few
texts waiting (a handful of clients) a batch mixes lengths; padding every text to the
longest would waste up to a third of the work on short texts. Measured on this model, a
call of 64 or more padded word-pieces runs near full speed and calls of about 512-2048 are
the fastest per word-piece, so the cuts cost nothing.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
from prometheus_client import Histogram

from semantic.common.errors import Overloaded
from semantic.embedder.settings import EmbedderSettings

BATCH_TEXTS = Histogram(
    "semantic_embedder_batch_texts",
    "Texts per inference batch.",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
BATCH_SECONDS = Histogram(
    "semantic_embedder_batch_seconds",
    "Inference time per batch in seconds.",
    ["model"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


class HasIds(Protocol):
    """Anything carrying the (truncated) token ids of one text."""

    @property
    def ids(self) -> np.ndarray[Any, Any]: ...


E = TypeVar("E", bound=HasIds)
Infer = Callable[[Sequence[E]], np.ndarray[Any, Any]]


@dataclass(eq=False)
class _Item(Generic[E]):
    encoded: E
    length: int
    arrival: float
    seq: int
    future: asyncio.Future[np.ndarray[Any, Any]] = field(repr=False)


@dataclass(frozen=True)
class BatchPolicy:
    """How batches are formed (the defaults are the service's settings)."""

    token_budget: int = EmbedderSettings.model_fields["embedder_token_budget"].default
    max_batch_texts: int = EmbedderSettings.model_fields["embedder_max_batch_texts"].default
    max_wait_s: float = EmbedderSettings.model_fields["embedder_max_wait_ms"].default / 1000
    max_pending: int = EmbedderSettings.model_fields["embedder_max_pending"].default
    workers: int = 1
    group_tokens: int = 2048
    call_cost_tokens: int = 64
    window_texts: int = 0
    """A batch is made of the oldest pending text and its length-neighbours among the texts
    that arrived at most this many texts after it (0: twice ``max_batch_texts``). Without
    the bound, a batch would take texts of the same length from every waiting request and
    the requests would all finish late and together; with it, they finish roughly in
    arrival order (what a pipelined caller, such as the indexer's consumers, needs: one
    writes while the next one's texts are embedded)."""
    small_batch_tokens: int = 0
    """A batch of at most this many padded word-pieces (texts x longest) runs on the shared
    session even when it runs alone (0: never). For a graph whose small calls gain nothing
    from more threads (see ``engine.SMALL_BATCH_TOKENS``), one thread answers as fast and
    leaves no pool threads spinning for the CPU the caller needs next."""


def split_by_length(lengths: Sequence[int], group_tokens: int, call_cost: int) -> list[int]:
    """Where to cut ``lengths`` (ascending) into model calls: the end index of each run.

    Minimises ``sum(run size x longest in run) + call_cost x runs`` (dynamic programming over
    the cut points, O(n^2) for n texts); a run longer than one text stays within
    ``group_tokens`` padded word-pieces.
    """
    n = len(lengths)
    best = [0.0] + [float("inf")] * n  # best[j]: cheapest cost of lengths[:j]
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        longest = lengths[j - 1]  # ascending: the run's last text is its longest
        for i in range(j - 1, -1, -1):
            size = j - i
            if size > 1 and size * longest > group_tokens:
                break
            cost = best[i] + size * longest + call_cost
            if cost < best[j]:
                best[j], cut[j] = cost, i
    ends: list[int] = []
    j = n
    while j > 0:
        ends.append(j)
        j = cut[j]
    return ends[::-1]


class MicroBatcher(Generic[E]):
    """Merges concurrent embedding requests into token-budget batches for one model."""

    def __init__(
        self,
        name: str,
        infer: Infer[E],
        executor: Executor,
        policy: BatchPolicy,
        *,
        infer_shared: Infer[E] | None = None,
    ) -> None:
        self._name = name
        self._infer = infer
        self._infer_shared = infer_shared or infer
        self._executor = executor
        self._policy = policy
        self._by_length: list[tuple[int, int, _Item[E]]] = []  # (length, seq, item), sorted
        self._oldest: dict[int, _Item[E]] = {}  # seq -> item, insertion = arrival order
        self._seq = 0
        self._pending_tokens = 0
        self._arrived = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._running = 0  # batches executing right now

    @property
    def pending(self) -> int:
        """Texts waiting for a batch."""
        return len(self._oldest)

    def start(self) -> None:
        """Start the worker loops (call from the running event loop)."""
        for i in range(self._policy.workers):
            self._loops.append(asyncio.create_task(self._run(), name=f"batcher-{self._name}-{i}"))

    async def close(self) -> None:
        """Stop the loops; texts still pending fail with Overloaded."""
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops.clear()
        for item in self._oldest.values():
            if not item.future.done():
                item.future.set_exception(Overloaded(f"embedder {self._name} is shutting down"))
        self._oldest.clear()
        self._by_length.clear()

    async def embed(self, encoded: Sequence[E]) -> list[np.ndarray[Any, Any]]:
        """One vector per encoded text, in order; raises Overloaded when the queue is full."""
        if self.pending + len(encoded) > self._policy.max_pending:
            raise Overloaded(
                f"embedder queue for {self._name} "
                f"({self.pending} texts pending, limit {self._policy.max_pending})"
            )
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        futures = []
        for enc in encoded:
            future: asyncio.Future[np.ndarray[Any, Any]] = loop.create_future()
            self._seq += 1
            item = _Item(enc, max(1, len(enc.ids)), now, self._seq, future)
            bisect.insort(self._by_length, (item.length, item.seq, item), key=lambda t: t[:2])
            self._oldest[item.seq] = item
            self._pending_tokens += item.length
            futures.append(future)
        self._arrived.set()
        return list(await asyncio.gather(*futures))

    async def _run(self) -> None:
        while True:
            while not self._oldest:
                self._arrived.clear()
                await self._arrived.wait()
            await self._linger()
            batch = self._take_batch()
            if batch:
                await self._execute(batch)

    async def _linger(self) -> None:
        """Wait for the batch to fill to the budget, at most max_wait after the oldest."""
        policy = self._policy
        if not self._running:
            return
        oldest = next(iter(self._oldest.values()))
        deadline = oldest.arrival + policy.max_wait_s
        while (
            self._pending_tokens < policy.token_budget
            and len(self._oldest) < policy.max_batch_texts
        ):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    def _take_batch(self) -> list[_Item[E]]:
        """The oldest pending text plus its length-neighbours among the texts that arrived
        soon after it (``BatchPolicy.window_texts``), within the token budget."""
        if not self._oldest:
            return []
        policy = self._policy
        anchor = next(iter(self._oldest.values()))
        newest = anchor.seq + (policy.window_texts or 2 * policy.max_batch_texts)
        keys = self._by_length

        def below(i: int) -> int:  # the next eligible index at or below i (-1: none)
            while i >= 0 and keys[i][1] > newest:
                i -= 1
            return i

        def above(i: int) -> int:  # the next eligible index at or above i (len: none)
            while i < len(keys) and keys[i][1] > newest:
                i += 1
            return i

        at = bisect.bisect_left(keys, (anchor.length, anchor.seq), key=lambda t: t[:2])
        chosen = [at]
        longest = anchor.length
        lo, hi = below(at - 1), above(at + 1)
        while len(chosen) < policy.max_batch_texts:
            short = keys[lo][0] if lo >= 0 else None
            long = keys[hi][0] if hi < len(keys) else None
            if short is None and long is None:
                break
            take_long = short is None or (long is not None and long - longest <= longest - short)
            new_longest = max(longest, long) if take_long and long is not None else longest
            if new_longest * (len(chosen) + 1) > policy.token_budget:
                if (
                    take_long
                    and short is not None
                    and longest * (len(chosen) + 1) <= policy.token_budget
                ):
                    chosen.append(lo)  # a shorter neighbour still fits
                    lo = below(lo - 1)
                    continue
                break
            if take_long:
                chosen.append(hi)
                hi = above(hi + 1)
                longest = new_longest
            else:
                chosen.append(lo)
                lo = below(lo - 1)
        chosen.sort()  # length order, as keys
        taken = set(chosen)
        batch = [keys[i][2] for i in chosen]
        self._by_length = [entry for i, entry in enumerate(keys) if i not in taken]
        for item in batch:
            del self._oldest[item.seq]
            self._pending_tokens -= item.length
        return batch

    def _infer_split(self, infer: Infer[E], batch: list[E]) -> np.ndarray[Any, Any]:
        """Run ``batch`` (in length order) as the model calls ``split_by_length`` chooses."""
        policy = self._policy
        lengths = [max(1, len(encoded.ids)) for encoded in batch]
        ends = split_by_length(lengths, policy.group_tokens, policy.call_cost_tokens)
        if len(ends) == 1:
            return infer(batch)
        parts, start = [], 0
        for end in ends:
            parts.append(infer(batch[start:end]))
            start = end
        return np.concatenate(parts)

    async def _execute(self, batch: list[_Item[E]]) -> None:
        live = [item for item in batch if not item.future.done()]  # caller may have gone
        if not live:
            return
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        # side by side with another batch (running, or about to start from what is pending):
        # the shared inference; alone: the solo one, every thread on this batch, unless it
        # is small enough for one thread (policy.small_batch_tokens)
        padded = len(live) * max(item.length for item in live)
        shared = self._policy.workers > 1 and (
            self._running > 0 or bool(self._oldest) or padded <= self._policy.small_batch_tokens
        )
        infer = self._infer_shared if shared else self._infer
        self._running += 1
        try:
            vectors = await loop.run_in_executor(
                self._executor, self._infer_split, infer, [item.encoded for item in live]
            )
        except Exception as exc:
            for item in live:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        finally:
            self._running -= 1
        BATCH_SECONDS.labels(self._name).observe(time.perf_counter() - started)
        BATCH_TEXTS.labels(self._name).observe(len(live))
        for item, vector in zip(live, vectors, strict=True):
            if not item.future.done():
                item.future.set_result(vector)
