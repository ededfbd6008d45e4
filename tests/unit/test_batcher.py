"""Micro-batching: merged across callers, within the token budget, bucketed by length,
off the event loop, and refusing work when full."""

import asyncio
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pytest

from semantic.common.errors import Overloaded
from semantic.embedder.batcher import BatchPolicy, MicroBatcher, split_by_length


@dataclass(frozen=True)
class Text:
    """A stand-in encoded text: its length is its token count, its vector names it."""

    ids: np.ndarray
    tag: float


def text(length: int, tag: float) -> Text:
    return Text(np.zeros(length, dtype=np.int64), tag)


class RecordingModel:
    """Returns [tag, length] per text and records every batch it was given."""

    def __init__(self, delay: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.threads: set[int] = set()
        self.delay = delay

    def __call__(self, batch: list[Text]) -> np.ndarray:
        self.threads.add(threading.get_ident())
        self.batches.append([len(t.ids) for t in batch])
        if self.delay:
            threading.Event().wait(self.delay)
        return np.array([[t.tag, len(t.ids)] for t in batch], dtype=np.float32)


@pytest.fixture
def executor():  # type: ignore[no-untyped-def]
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield pool


async def _with_batcher(model: RecordingModel, executor, policy: BatchPolicy):  # type: ignore[no-untyped-def]
    batcher = MicroBatcher("test", model, executor, policy)
    batcher.start()
    return batcher


async def test_each_caller_gets_its_own_vectors_in_order(executor) -> None:  # type: ignore[no-untyped-def]
    model = RecordingModel()
    batcher = await _with_batcher(model, executor, BatchPolicy(max_wait_s=0.01))
    try:
        requests = [[text(5 + (i * 7 + j) % 20, i * 100 + j) for j in range(5)] for i in range(8)]
        results = await asyncio.gather(*(batcher.embed(r) for r in requests))
        for request, vectors in zip(requests, results, strict=True):
            assert [v[0] for v in vectors] == [t.tag for t in request]
    finally:
        await batcher.close()


async def test_concurrent_callers_are_merged_into_few_batches(executor) -> None:  # type: ignore[no-untyped-def]
    model = RecordingModel()
    batcher = await _with_batcher(
        model, executor, BatchPolicy(max_wait_s=0.05, token_budget=10_000, max_batch_texts=64)
    )
    try:
        await asyncio.gather(*(batcher.embed([text(10, i)]) for i in range(32)))
    finally:
        await batcher.close()
    assert sum(len(b) for b in model.batches) == 32
    assert len(model.batches) <= 2


async def test_batches_respect_token_budget_and_text_limit(executor) -> None:  # type: ignore[no-untyped-def]
    model = RecordingModel(delay=0.005)
    policy = BatchPolicy(max_wait_s=0.01, token_budget=200, max_batch_texts=8)
    batcher = await _with_batcher(model, executor, policy)
    rng = np.random.default_rng(7)
    try:
        lengths = rng.integers(3, 120, size=200)
        await asyncio.gather(*(batcher.embed([text(int(n), 0)]) for n in lengths))
    finally:
        await batcher.close()
    assert sum(len(b) for b in model.batches) == 200
    for batch in model.batches:
        assert len(batch) <= 8
        assert max(batch) * len(batch) <= 200 or len(batch) == 1


async def test_mixed_lengths_are_bucketed_together(executor) -> None:  # type: ignore[no-untyped-def]
    model = RecordingModel()
    policy = BatchPolicy(max_wait_s=0.05, token_budget=4096, max_batch_texts=16)
    batcher = await _with_batcher(model, executor, policy)
    mixed = [text(8 if i % 2 else 250, i) for i in range(32)]
    try:
        await batcher.embed(mixed)
    finally:
        await batcher.close()
    for batch in model.batches:
        assert len(set(batch)) == 1, f"short and long texts padded together: {batch}"


async def test_inference_runs_off_the_event_loop_thread(executor) -> None:  # type: ignore[no-untyped-def]
    model = RecordingModel()
    batcher = await _with_batcher(model, executor, BatchPolicy())
    try:
        await batcher.embed([text(4, 1)])
    finally:
        await batcher.close()
    assert threading.get_ident() not in model.threads


class HeldModel(RecordingModel):
    """A model whose every call waits until the test releases it."""

    def __init__(self) -> None:
        super().__init__()
        self.inferring = threading.Event()
        self.release = threading.Event()

    def __call__(self, batch: list[Text]) -> np.ndarray:
        self.inferring.set()
        self.release.wait()
        return super().__call__(batch)


async def test_full_queue_refuses_at_once(executor) -> None:  # type: ignore[no-untyped-def]
    model = HeldModel()
    policy = BatchPolicy(max_wait_s=0.0, max_pending=4, max_batch_texts=1, workers=1)
    batcher = await _with_batcher(model, executor, policy)
    try:
        first = asyncio.create_task(batcher.embed([text(4, 0)]))
        await asyncio.to_thread(model.inferring.wait)  # the first text is now being inferred
        queued = asyncio.create_task(batcher.embed([text(4, i) for i in range(4)]))
        await asyncio.sleep(0)  # one step of that task: embed queues its texts before awaiting
        assert batcher.pending == 4
        with pytest.raises(Overloaded, match="limit 4"):
            await batcher.embed([text(4, 9)])
        model.release.set()
        await asyncio.gather(first, queued)
    finally:
        model.release.set()
        await batcher.close()


async def test_requests_are_answered_in_arrival_order_not_mixed_by_length(executor) -> None:  # type: ignore[no-untyped-def]
    model = HeldModel()
    policy = BatchPolicy(max_wait_s=0.0, max_batch_texts=4, window_texts=3, workers=1)
    batcher = await _with_batcher(model, executor, policy)
    try:
        calls = [asyncio.create_task(batcher.embed([text(4, 0)]))]
        await asyncio.to_thread(model.inferring.wait)  # the worker is busy with it
        for lengths in ((10, 20, 30, 40), (10, 10, 10, 10)):  # a request, then a later one
            calls.append(asyncio.create_task(batcher.embed([text(n, 1) for n in lengths])))
            await asyncio.sleep(0)  # its texts are queued (embed queues before awaiting)
        assert batcher.pending == 8
        model.release.set()
        await asyncio.gather(*calls)
    finally:
        model.release.set()
        await batcher.close()
    # The later request's texts, all as short as the first one's oldest, are nearer in
    # length than its other texts: unbounded, they would fill the first's batch and both
    # requests would finish only after the third batch.
    assert model.batches == [[4], [10, 20, 30, 40], [10, 10, 10, 10]]


async def test_a_failing_batch_fails_only_its_callers(executor) -> None:  # type: ignore[no-untyped-def]
    def infer(batch: list[Text]) -> np.ndarray:
        if any(t.tag < 0 for t in batch):
            raise RuntimeError("model exploded")
        return np.array([[t.tag, 0] for t in batch], dtype=np.float32)

    batcher = MicroBatcher("test", infer, executor, BatchPolicy(max_wait_s=0.0, max_batch_texts=1))
    batcher.start()
    try:
        bad, good = await asyncio.gather(
            batcher.embed([text(3, -1)]), batcher.embed([text(3, 2)]), return_exceptions=True
        )
    finally:
        await batcher.close()
    assert isinstance(bad, RuntimeError)
    assert isinstance(good, list)
    assert good[0][0] == 2


def _cost(lengths: list[int], ends: list[int], call_cost: int) -> int:
    total, start = 0, 0
    for end in ends:
        total += (end - start) * lengths[end - 1] + call_cost
        start = end
    return total


def test_split_keeps_equal_lengths_in_one_call() -> None:
    assert split_by_length([12] * 40, group_tokens=2048, call_cost=64) == [40]


def test_split_cuts_between_short_and_long_texts() -> None:
    lengths = [10] * 30 + [250] * 8
    assert split_by_length(lengths, group_tokens=4096, call_cost=64) == [30, 38]


def test_split_respects_the_group_budget() -> None:
    lengths = sorted(random.Random(3).randint(20, 256) for _ in range(64))
    ends = split_by_length(lengths, group_tokens=1024, call_cost=64)
    start = 0
    for end in ends:
        assert end - start == 1 or (end - start) * lengths[end - 1] <= 1024
        start = end
    assert ends[-1] == len(lengths)


def test_split_is_the_cheapest_partition() -> None:
    rng = random.Random(11)
    for _ in range(50):
        lengths = sorted(rng.randint(1, 120) for _ in range(rng.randint(1, 9)))
        n = len(lengths)
        brute = min(
            _cost(lengths, [i for i in range(1, n) if mask >> (i - 1) & 1] + [n], 16)
            for mask in range(2 ** (n - 1))
        )
        assert _cost(lengths, split_by_length(lengths, 10_000, 16), 16) == brute


async def test_a_mixed_batch_runs_as_several_calls_with_answers_in_order(executor) -> None:  # type: ignore[no-untyped-def]
    model = RecordingModel()
    policy = BatchPolicy(max_wait_s=0.05, token_budget=100_000, max_batch_texts=64)
    batcher = await _with_batcher(model, executor, policy)
    try:
        requests = [[text(8, i), text(240, 100 + i)] for i in range(16)]
        results = await asyncio.gather(*(batcher.embed(r) for r in requests))
    finally:
        await batcher.close()
    for request, vectors in zip(requests, results, strict=True):
        assert [(v[0], v[1]) for v in vectors] == [(t.tag, len(t.ids)) for t in request]
    assert all(len(set(lengths)) == 1 for lengths in model.batches)  # never padded 8 to 240


async def test_a_lone_batch_runs_solo_and_batches_side_by_side_run_shared(executor) -> None:  # type: ignore[no-untyped-def]
    solo, shared = RecordingModel(delay=0.05), RecordingModel(delay=0.05)
    batcher = MicroBatcher(
        "test",
        solo,
        executor,
        BatchPolicy(max_wait_s=0.0, max_batch_texts=2, workers=2),
        infer_shared=shared,
    )
    batcher.start()
    try:
        await batcher.embed([text(4, 1)])  # alone: every thread on it
        assert (len(solo.batches), len(shared.batches)) == (1, 0)
        # six texts, two per batch: while one batch runs, the next ones run beside it
        await asyncio.gather(*(batcher.embed([text(4, i)]) for i in range(6)))
        assert sum(len(b) for b in solo.batches + shared.batches) == 7
        assert len(shared.batches) >= 2
    finally:
        await batcher.close()


async def test_a_small_lone_batch_runs_shared_when_the_policy_says_so(executor) -> None:  # type: ignore[no-untyped-def]
    solo, shared = RecordingModel(), RecordingModel()
    policy = BatchPolicy(max_wait_s=0.0, workers=2, small_batch_tokens=64)
    batcher = MicroBatcher("test", solo, executor, policy, infer_shared=shared)
    batcher.start()
    try:
        await batcher.embed([text(12, 1)])  # a query: 12 padded word-pieces
        await batcher.embed([text(30, 2), text(34, 3)])  # 2 x 34 = 68: over
        await batcher.embed([text(200, 4)])  # a document
    finally:
        await batcher.close()
    assert shared.batches == [[12]]
    assert solo.batches == [[30, 34], [200]]


async def test_one_worker_always_runs_solo(executor) -> None:  # type: ignore[no-untyped-def]
    solo, shared = RecordingModel(delay=0.02), RecordingModel()
    policy = BatchPolicy(max_wait_s=0.0, max_batch_texts=2, small_batch_tokens=64)
    batcher = MicroBatcher("test", solo, executor, policy, infer_shared=shared)
    batcher.start()
    try:
        await asyncio.gather(*(batcher.embed([text(4, i)]) for i in range(6)))
    finally:
        await batcher.close()
    assert shared.batches == []
    assert sum(len(b) for b in solo.batches) == 6
