"""`semantic bench soak`: the whole stack under a steady mixed load for a while.

A throw-away stack (``LocalStack``: embedded PostgreSQL without fsync and NATS JetStream,
the embedder, search and indexer as processes with their default settings, auth off; the
embedder keeps its own queue limit, which other benches lift) gets a starting corpus
through ``Search.Upsert``: ``corpus`` documents of a BEIR dataset (NFCorpus from
``../shared/data`` when present, as the other benches read it), else generated text, each
node with a content type, tags and metadata for filters. Then, for ``warmup_s`` and then
``minutes``:

* ``clients`` closed-loop gRPC clients (one channel each) mix ``Search`` (text: dense,
  hybrid or keyword, a filter on content type, tags or metadata one time in three),
  ``Nearest``, ``Recommend`` (journeys, cold users, examples), ``Get``, ``Upsert`` (nodes
  of their own, re-embedded or metadata only) and ``Track``;
* one publisher sends ``rate`` events/s to NATS: ContentEvents that upsert and delete
  nodes of their own (increasing versions) and UserEvents on corpus nodes.

Corpus nodes are never deleted, so every ``Nearest`` and ``Track`` names an existing node:
any status but OK is a finding, except RESOURCE_EXHAUSTED (load shedding, the documented
answer to overload). The report has calls by RPC and status code with p50/p99 latency of
the successful calls (warm-up calls apart), a few examples of each failure, events
published / applied / dead-lettered (the indexer's metrics and the dead-letter stream,
after the indexer has drained), and the memory of every process (:mod:`footprint`) right
after the warm-up and at the end, with its growth. Nothing here is asserted; the goals
are reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import nats
import nats.errors
from prometheus_client.parser import text_string_to_metric_families

from semantic.embedder.settings import EmbedderSettings
from semantic.indexer.settings import IndexerSettings
from semantic.tools.bench.footprint import (
    Footprint,
    Metric,
    footprint,
    growth,
    machine,
)
from semantic.tools.bench.indexer import IndexerBenchConfig, documents
from semantic.tools.bench.tally import ALLOWED_CODES, StatusTally
from semantic.tools.bench.workload import Workload
from semantic.tools.devstack.ports import free_port
from semantic.tools.devstack.stack import LocalStack
from semantic.tools.progress import progress_bar
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

NFCORPUS = Path("../shared/data/nfcorpus")
RSS_GROWTH_LIMIT = 0.10
WINDOW_S = 60.0
"""Span of the readings whose median is a process's memory at the start and at the end."""
STACK_THREADS = 2  # the embedder's onnxruntime threads, as every LocalStack bench runs it
MEMORY_METRIC: dict[str, Metric] = {"postgres": "pss"}  # backends share their buffers


@dataclass(frozen=True)
class SoakConfig:
    """What to run."""

    model_dir: Path
    minutes: float = 10.0
    clients: int = 16
    rate: float = 20.0
    corpus: int = 2000
    dataset: Path | None = None
    warmup_s: float = 120.0
    """Load before the first memory reading: allocator pools and caches settle in the first
    minutes (see ``second_half_growth_ratio``)."""
    settle_max_s: float = 600.0
    """After ``warmup_s``, the warm-up goes on (under the same load) until every process's
    memory settled (:func:`settled`), for at most this long; the report says when it did."""
    users: int = 200
    sample_s: float = 5.0
    call_timeout_s: float = 30.0
    drain_timeout_s: float = 300.0
    seed: int = 11


def resolve_dataset(given: Path | None) -> Path | None:
    """``given``, else NFCorpus from ``../shared/data`` when present, else None (generated)."""
    if given is not None:
        return given
    return NFCORPUS if (NFCORPUS / "corpus.jsonl").is_file() else None


class Traffic:
    """The clients and the event publisher of one run, the tallies they record into, and
    the signal that stops them. :meth:`swap` closes one phase (warm-up, soak)."""

    def __init__(self, work: Workload, call_timeout_s: float) -> None:
        self.work = work
        self.call_timeout_s = call_timeout_s
        self.stop = asyncio.Event()
        self.calls, self.modes = StatusTally(), StatusTally()
        self.sent: Counter[str] = Counter()

    def swap(self) -> tuple[StatusTally, StatusTally]:
        """The calls so far (by RPC, and Search by mode) and fresh tallies for what follows."""
        done = self.calls, self.modes
        self.calls, self.modes = StatusTally(), StatusTally()
        return done

    async def client(self, stub: search_pb2_grpc.SearchStub, rng: random.Random) -> None:
        """One closed-loop client: a request of the mix, then the next, until stopped."""
        while not self.stop.is_set():
            started = time.perf_counter()
            rpc, variant, call = self.work.request(stub, rng, self.call_timeout_s)
            code, detail = "OK", ""
            try:
                await call
            except grpc.aio.AioRpcError as exc:
                code, detail = exc.code().name, exc.details() or ""
            except Exception as exc:  # a client-side failure is a finding too, not a crash
                code, detail = f"CLIENT_{type(exc).__name__}", str(exc)
            ms = (time.perf_counter() - started) * 1000
            self.calls.record(rpc, code, ms, f"{variant} {detail}".strip())
            if variant:
                self.modes.record(variant, code, ms, detail)
            if code == "RESOURCE_EXHAUSTED":
                await asyncio.sleep(0.05)  # shed load: back off a little, as a client should

    async def publish(self, js: Any, rate: float, rng: random.Random) -> None:
        """``rate`` events/s until stopped; counts what JetStream acknowledged, by kind."""
        if rate <= 0:
            return
        started, index = time.perf_counter(), 0
        while not self.stop.is_set():
            wait = started + index / rate - time.perf_counter()
            index += 1
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), wait)
                    return
            kind, subject, payload, event_id = self.work.event(rng)
            try:
                await js.publish(subject, payload, headers={"Nats-Msg-Id": event_id})
                self.sent[kind] += 1
            except Exception:  # a refused publish is reported, the stream goes on
                self.sent["publish_errors"] += 1


async def _load(stub: search_pb2_grpc.SearchStub, nodes: list[cpb.Node]) -> int:
    """Upsert the corpus, 32 nodes per call, two calls at a time; returns vectors written."""
    gate = asyncio.Semaphore(2)

    async def upsert(part: list[cpb.Node]) -> int:
        async with gate:
            reply = await stub.Upsert(pb.UpsertRequest(nodes=part), timeout=600)
        bar.update(len(part))
        return sum(r.vectors_written for r in reply.results)

    parts = [nodes[i : i + 32] for i in range(0, len(nodes), 32)]
    with progress_bar(len(nodes), "documents") as bar:
        return sum(await asyncio.gather(*(upsert(p) for p in parts)))


def counter_by(text: str, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """The samples of counter ``name`` (``..._total``) in a Prometheus exposition, summed
    by the values of ``labels``."""
    out: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                key = tuple(sample.labels.get(label, "") for label in labels)
                out[key] = out.get(key, 0.0) + sample.value
    return out


async def _drain(js: Any, timeout_s: float) -> tuple[bool, float]:
    """Wait until the indexer's consumers have nothing pending or unacked."""
    settings = IndexerSettings.model_fields
    stream = settings["indexer_stream"].default
    consumers = (settings["indexer_consumer"].default, settings["indexer_user_consumer"].default)
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        infos = [await js.consumer_info(stream, name) for name in consumers]
        if all(not i.num_pending and not i.num_ack_pending for i in infos):
            return True, time.perf_counter() - started
        await asyncio.sleep(0.2)
    return False, time.perf_counter() - started


async def _events(
    js: Any, metrics_url: str, sent: Counter[str], drain_timeout_s: float
) -> dict[str, Any]:
    drained, seconds = await _drain(js, drain_timeout_s)
    text = await asyncio.to_thread(_fetch, metrics_url)
    applied: dict[str, dict[str, int]] = {}
    for (kind, outcome), n in sorted(
        counter_by(text, "semantic_indexer_events_total", "kind", "outcome").items()
    ):
        applied.setdefault(kind, {})[outcome] = int(n)
    dead = counter_by(text, "semantic_indexer_dead_letters_total", "reason")
    retries = counter_by(text, "semantic_indexer_retries_total", "kind")
    dlq = IndexerSettings.model_fields["indexer_dlq_stream"].default
    dlq_messages = (await js.stream_info(dlq)).state.messages
    examples = []
    if dlq_messages:
        subscription = await js.pull_subscribe("semantic.dlq.>", stream=dlq)
        with contextlib.suppress(TimeoutError, nats.errors.TimeoutError):
            for msg in await subscription.fetch(5, timeout=5):
                headers = msg.headers or {}
                examples.append({k: v for k, v in headers.items() if k.startswith("Semantic-")})
    return {
        "published": dict(sent),
        "published_total": sum(n for kind, n in sent.items() if kind != "publish_errors"),
        "drained": drained,
        "drain_seconds": round(seconds, 1),
        "applied": applied,
        "applied_total": sum(sum(v.values()) for v in applied.values()),
        "retried_batches": {key[0]: int(n) for key, n in retries.items()},
        "dead_lettered": {key[0]: int(n) for key, n in dead.items()},
        "dead_letter_stream_messages": dlq_messages,
        "dead_letter_examples": examples,
    }


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def _larger(name: str, one: Footprint, other: Footprint) -> Footprint:
    metric = MEMORY_METRIC.get(name, "rss")
    return one if one.value(metric) >= other.value(metric) else other


def trajectory(
    name: str,
    samples: Sequence[Footprint],
    points: int = 11,
    *,
    window: int = 12,
    sample_s: float = 5.0,
) -> dict[str, Any]:
    """The process's memory over the run (``points`` readings, evenly spaced, in MB);
    ``second_half_growth_ratio``: end / the reading at mid-run; and the steady level at
    both ends: the medians of the first and of the last ``window`` readings (a minute at
    the soak's 5 s), their ratio ``window_growth_ratio`` (what the goal judges: one
    reading of a garbage-collected process, such as the Go broker, lands anywhere in its
    collection cycle), and ``slope_mb_per_hour``, the least-squares trend of all readings.
    Memory that settles shows ratios near 1 and a slope near 0; a leak shows both."""
    metric = MEMORY_METRIC.get(name, "rss")
    values = [s.value(metric) / 2**20 for s in samples]
    if not values:
        return {
            "timeline_mb": [],
            "second_half_growth_ratio": 1.0,
            "window_growth_ratio": 1.0,
            "slope_mb_per_hour": 0.0,
        }
    picks = sorted({round(i * (len(values) - 1) / (points - 1)) for i in range(points)})
    middle = values[(len(values) - 1) // 2]
    width = max(1, min(window, len(values) // 2 or 1))
    first, last = statistics.median(values[:width]), statistics.median(values[-width:])
    hours = [i * sample_s / 3600 for i in range(len(values))]
    slope = statistics.linear_regression(hours, values).slope if len(values) > 1 else 0.0
    return {
        "timeline_mb": [round(values[i], 1) for i in picks],
        "second_half_growth_ratio": round(values[-1] / middle, 3) if middle else 1.0,
        "start_window_mb": round(first, 1),
        "end_window_mb": round(last, 1),
        "window_growth_ratio": round(last / first, 3) if first else 1.0,
        "slope_mb_per_hour": round(slope, 2),
    }


def steady_growth_within(report: Mapping[str, Mapping[str, Any]], limit: float) -> bool:
    """Whether every process's steady level (``window_growth_ratio``) grew by less than
    ``limit`` (0.10: under 10%)."""
    return all(entry["window_growth_ratio"] < 1.0 + limit for entry in report.values())


SETTLED_WITHIN = 0.03
"""A process has settled when its last minute's median memory is within 3% of the minute's
before."""


def settled(history: Sequence[Mapping[str, Footprint]], window: int) -> bool:
    """Whether every process's median memory over the last ``window`` readings is within
    :data:`SETTLED_WITHIN` of its median over the ``window`` readings before."""
    if len(history) < 2 * window:
        return False
    for name in history[-1]:
        metric = MEMORY_METRIC.get(name, "rss")
        values = [h[name].value(metric) for h in history[-2 * window :] if name in h]
        before = statistics.median(values[:window])
        last = statistics.median(values[window:])
        if before and abs(last / before - 1) > SETTLED_WITHIN:
            return False
    return True


async def _settle(
    pids: Mapping[str, int], config: SoakConfig, progress: Callable[[str], None]
) -> float | None:
    """Keep warming up until the processes' memory settled (seconds it took beyond
    ``warmup_s``), or ``settle_max_s`` passed (None)."""
    window = max(1, round(WINDOW_S / config.sample_s))
    history: list[dict[str, Footprint]] = []
    began = time.perf_counter()
    while time.perf_counter() - began < config.settle_max_s:
        history.append(await asyncio.to_thread(_sample, pids))
        if settled(history, window):
            return round(time.perf_counter() - began, 1)
        await asyncio.sleep(config.sample_s)
    progress(f"memory did not settle within {config.settle_max_s:g} s more; measuring anyway")
    return None


def _sample(pids: Mapping[str, int]) -> dict[str, Footprint]:
    return {name: footprint(pid) for name, pid in pids.items()}


async def _soak(
    stack: LocalStack,
    config: SoakConfig,
    work: Workload,
    metrics_url: str,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    async with contextlib.AsyncExitStack() as closers:
        channels = [
            await closers.enter_async_context(grpc.aio.insecure_channel(stack.search_address))
            for _ in range(config.clients)
        ]
        nc = await nats.connect(stack.nats_url)
        closers.push_async_callback(nc.close)
        stubs = [search_pb2_grpc.SearchStub(channel) for channel in channels]
        progress(f"loading {len(work.docs)} documents through Upsert")
        started = time.perf_counter()
        vectors = await _load(stubs[0], work.corpus())
        corpus = {
            "documents": len(work.docs),
            "vectors": vectors,
            "load_seconds": round(time.perf_counter() - started, 1),
        }
        progress(f"loaded: {corpus}; warming up for {config.warmup_s:g} s")
        js = nc.jetstream()
        traffic = Traffic(work, config.call_timeout_s)
        rng = random.Random(config.seed)
        tasks = [
            asyncio.create_task(traffic.client(stub, random.Random(rng.random()))) for stub in stubs
        ]
        tasks.append(asyncio.create_task(traffic.publish(js, config.rate, rng)))
        await asyncio.sleep(config.warmup_s)
        pids = stack.pids()
        settle_began = time.perf_counter()
        settled_after = await _settle(pids, config, progress)
        warmed = time.perf_counter() - settle_began
        warmup, _ = traffic.swap()
        start = peak = await asyncio.to_thread(_sample, pids)
        samples = [start]
        machine_at_start = machine()
        progress(f"soaking for {config.minutes:g} min")
        began = time.perf_counter()
        deadline = began + config.minutes * 60
        while (left := deadline - time.perf_counter()) > 0:
            await asyncio.sleep(min(config.sample_s, left))
            now = await asyncio.to_thread(_sample, pids)
            peak = {name: _larger(name, peak[name], now[name]) for name in peak}
            samples.append(now)
            done = time.perf_counter() - began
            progress(f"{done:.0f} s: {traffic.calls.calls()} calls, {traffic.sent.total()} events")
        calls, modes = traffic.swap()
        wall = time.perf_counter() - began
        end = await asyncio.to_thread(_sample, pids)
        samples.append(end)
        traffic.stop.set()
        await asyncio.gather(*tasks)
        progress("waiting for the indexer to drain")
        events = await _events(js, metrics_url, traffic.sent, config.drain_timeout_s)
        events["published_per_s"] = round(
            events["published_total"] / max(config.warmup_s + warmed + wall, 1e-9), 1
        )
    memory = growth(start, end, metrics=MEMORY_METRIC, peak=peak)
    for name, entry in memory.items():
        readings = [sample[name] for sample in samples if name in sample]
        entry.update(
            trajectory(
                name,
                readings,
                window=max(1, round(WINDOW_S / config.sample_s)),
                sample_s=config.sample_s,
            )
        )
    unexpected = {**warmup.unexpected(), **calls.unexpected()}
    return {
        "machine": {**machine_at_start, "load_average_at_end": machine()["load_average"]},
        "corpus": corpus,
        "soak_seconds": round(wall, 1),
        "calls": calls.calls(),
        "calls_per_s": round(calls.calls() / max(wall, 1e-9), 1),
        "status_codes": calls.by_code(),
        "rpcs": calls.summary(),
        "search_modes": modes.summary(),
        "warmup": {
            "calls": warmup.calls(),
            "status_codes": warmup.by_code(),
            "settled_after_s": settled_after,
        },
        "error_examples": warmup.failures() + calls.failures(),
        "events": events,
        "memory": memory,
        "goal_errors_met": not unexpected,
        "goal_rss_met": steady_growth_within(memory, RSS_GROWTH_LIMIT),
        "goal_events_met": events["drained"]
        and not events["dead_lettered"]
        and not events["dead_letter_stream_messages"]
        and not events["published"].get("publish_errors", 0),
    }


def run_soak(
    config: SoakConfig, progress: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Start the stack, load, soak, drain; returns the JSON-ready report."""
    dataset = resolve_dataset(config.dataset)
    rng = random.Random(config.seed)
    docs = documents(
        IndexerBenchConfig(model_dir=config.model_dir, dataset=dataset), config.corpus, rng
    )
    metrics_port = free_port()
    indexer_env = {"SEMANTIC_METRICS_PORT": str(metrics_port)}
    # LocalStack lifts the embedder's queue limit for throughput benches; a soak runs the
    # service's own limit, so overload shows as RESOURCE_EXHAUSTED as it would deployed.
    max_pending = EmbedderSettings.model_fields["embedder_max_pending"].default
    embedder_env = {"SEMANTIC_EMBEDDER_MAX_PENDING": str(max_pending)}
    progress("starting the stack")
    with LocalStack(
        [config.model_dir],
        threads=STACK_THREADS,
        indexer_env=indexer_env,
        embedder_env=embedder_env,
    ) as stack:
        report = asyncio.run(
            _soak(
                stack,
                config,
                Workload(docs, config.users),
                f"http://127.0.0.1:{metrics_port}/metrics",
                progress,
            )
        )
    return {
        "benchmark": "soak",
        "minutes": config.minutes,
        "clients": config.clients,
        "event_rate_per_s": config.rate,
        "warmup_s": config.warmup_s,
        "corpus_from": str(dataset) if dataset else "generated (30-90 words)",
        "stack": {"embedder_intra_op_threads": STACK_THREADS, "embedder_max_pending": max_pending},
        "goals": {
            "errors": f"no status but {' or '.join(sorted(ALLOWED_CODES))}",
            "rss": f"every process grows by less than {RSS_GROWTH_LIMIT:.0%}",
            "events": "every event published, applied, none dead-lettered",
        },
        **report,
    }
