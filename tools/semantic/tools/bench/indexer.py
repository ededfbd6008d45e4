"""`semantic bench indexer`: events/s from publish to committed, and freshness.

One run measures, on a throw-away stack (embedded PostgreSQL and NATS, the embedder,
search and indexer as processes):

* ``embedder_in_process``: the model's own throughput on exactly the texts the indexer
  will embed (each document's chunks), in this process: the ceiling the indexer is
  compared with;
* ``indexer``: N ContentEvents published as fast as possible, timed from the first
  publish until the durable consumer has nothing pending or unacked (every event
  committed). The N events go in ``rounds``; each round is first embedded in process,
  then published to the stack, so both sides of the ratio see the same machine (a shared
  machine's speed drifts by 10-15% over minutes). Alongside: how busy the embedder was
  (its inference seconds over the wall time, from its metrics; up to the number of
  embedder workers, as batches run side by side) and the CPU seconds of
  every process, which tell whether the embedder is the bottleneck;
* ``freshness``: new events published at a steady rate (each of ``rates``); for each,
  the time from publish until its node has vectors in PostgreSQL, which is when Search
  can find it (search reads committed rows; nothing is cached), polled every
  ``poll_s``; with the CPU used meanwhile (``cpu_utilisation``: all processes' CPU
  seconds over the machine's cores x wall time);
* ``one_by_one_baseline``: the same kind of documents embedded and written one at a time
  through the same write path (one embed call and one transaction per document).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import nats
from tokenizers import Tokenizer

from semantic.common.embedder_client import EmbedderClient
from semantic.core.chunking import Chunker
from semantic.core.domain import NodeRecord
from semantic.core.settings import WritePathSettings
from semantic.core.writer import writer_from_settings
from semantic.indexer.settings import IndexerSettings
from semantic.store.postgres.db import create_pool, default_session_settings
from semantic.store.postgres.nodes import PostgresNodes
from semantic.store.postgres.spaces import PostgresSpaces
from semantic.tools.bench.embedder import engine_seconds, load_as_served
from semantic.tools.devstack.ports import free_port
from semantic.tools.devstack.process import cpu_seconds
from semantic.tools.devstack.stack import LocalStack
from semantic.tools.progress import progress_bar
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import events_pb2


@dataclass(frozen=True)
class IndexerBenchConfig:
    """What to measure."""

    model_dir: Path
    n: int = 20_000
    dataset: Path | None = None
    rates: tuple[float, ...] = (50.0,)
    freshness_events: int = 1000
    baseline_n: int = 300
    threads: int = 2
    workers: int = 2
    batch_size: int = IndexerSettings.model_fields["indexer_batch_size"].default
    rounds: int = 4
    poll_s: float = 0.025
    seed: int = 7


def documents(config: IndexerBenchConfig, count: int, rng: random.Random) -> list[tuple[str, str]]:
    """(title, body) pairs: the dataset's documents in order, or generated 30-90 word texts."""
    if config.dataset is not None:
        docs: list[tuple[str, str]] = []
        with (config.dataset / "corpus.jsonl").open(encoding="utf-8") as corpus:
            for line in corpus:
                row = json.loads(line)
                if row.get("text", "").strip():
                    docs.append((row.get("title", ""), row["text"]))
                if len(docs) >= count:
                    break
        return [docs[i % len(docs)] for i in range(count)]
    vocab = Tokenizer.from_file(str(config.model_dir / "tokenizer.json")).get_vocab()
    words = sorted(w for w in vocab if w.isalpha() and w.isascii() and len(w) >= 3)
    return [
        (" ".join(rng.choices(words, k=4)), " ".join(rng.choices(words, k=rng.randint(30, 90))))
        for _ in range(count)
    ]


def _event(node_id: str, title: str, body: str) -> bytes:
    return events_pb2.ContentEvent(
        event_id=str(uuid.uuid4()),
        op=events_pb2.CONTENT_OP_UPSERT,
        version=1,
        node=cpb.Node(id=node_id, content_type="page", title=title, body=body),
        source="bench",
    ).SerializeToString()


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    if not ordered:
        return {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000, 1)

    return {"p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": round(ordered[-1] * 1000, 1)}


async def _drained(js: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = await js.consumer_info("SEMANTIC", "indexer")
        if not info.num_pending and not info.num_ack_pending:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("the indexer did not drain the stream in time")


class _Meter:
    """CPU seconds of every stack process (and this one), and the embedder's inference
    seconds (from its metrics), between two readings."""

    def __init__(self, stack: LocalStack, metrics_url: str) -> None:
        self._stack = stack
        self._metrics_url = metrics_url

    def read(self) -> dict[str, float]:
        """Cumulative readings: ``wall``, ``inference`` and one CPU entry per process."""
        reading = {name: cpu_seconds(pid) for name, pid in self._stack.pids().items()}
        reading["bench"] = time.process_time()
        with urllib.request.urlopen(self._metrics_url, timeout=10) as response:
            text = response.read().decode()
        reading["inference"] = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("semantic_embedder_batch_seconds_sum")
        )
        reading["wall"] = time.perf_counter()
        return reading


def _spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """What two meter readings differ by."""
    return {key: after[key] - before.get(key, 0.0) for key in after}


def _usage(spent: dict[str, float]) -> dict[str, Any]:
    """Embedder busy fraction, CPU by process and the share of the machine's CPU used, from
    what was spent (wall, inference and CPU seconds)."""
    wall = max(spent["wall"], 1e-9)
    cpu = {name: round(v, 1) for name, v in spent.items() if name not in ("wall", "inference")}
    total = sum(cpu.values())
    return {
        "embedder_busy": round(spent["inference"] / wall, 3),
        "cpu_seconds": cpu,
        "cpu_share": {name: round(value / max(total, 1e-9), 3) for name, value in cpu.items()},
        "cpu_utilisation": round(total / (wall * (os.cpu_count() or 1)), 3),
    }


async def _publish_all(stack: LocalStack, docs: list[tuple[str, str]], first: int) -> float:
    """Publish events t<first>.. at once; seconds from the first publish until drained."""
    nc = await nats.connect(stack.nats_url)
    try:
        js = nc.jetstream()
        payloads = [_event(f"t{first + i}", t, b) for i, (t, b) in enumerate(docs)]
        started = time.perf_counter()
        with progress_bar(len(payloads), "events published") as bar:
            for start in range(0, len(payloads), 256):  # pipelined, acked by JetStream
                part = payloads[start : start + 256]
                await asyncio.gather(*(js.publish("semantic.content._.page", p) for p in part))
                bar.update(len(part))
        await _drained(js, timeout_s=3600)
        return time.perf_counter() - started
    finally:
        await nc.close()


async def _freshness(
    stack: LocalStack, docs: list[tuple[str, str]], rate: float, poll_s: float, prefix: str
) -> dict[str, float]:
    published: dict[str, float] = {}
    visible: dict[str, float] = {}
    done = asyncio.Event()
    async with contextlib.AsyncExitStack() as closers:
        nc = await nats.connect(stack.nats_url)
        closers.push_async_callback(nc.close)
        conn = await asyncpg.connect(stack.database_url)
        closers.push_async_callback(conn.close)
        js = nc.jetstream()
        table = await conn.fetchval("SELECT space_id FROM semantic.space_aliases")
        query = (
            f"SELECT DISTINCT node_id FROM semantic.vectors_{int(table)}"
            " WHERE tenant = '' AND node_id = ANY($1::text[])"
        )

        async def watch() -> None:
            while not done.is_set() or len(visible) < len(published):
                waiting = [k for k in published if k not in visible]
                if waiting:
                    for row in await conn.fetch(query, waiting):
                        visible[row["node_id"]] = time.perf_counter()
                await asyncio.sleep(poll_s)

        watcher = asyncio.create_task(watch())
        interval = 1.0 / rate
        start = time.perf_counter()
        for i, (title, body) in enumerate(docs):
            due = start + i * interval
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            node_id = f"{prefix}{i}"
            await js.publish("semantic.content._.page", _event(node_id, title, body))
            published[node_id] = time.perf_counter()
        done.set()
        await asyncio.wait_for(watcher, timeout=120)
    delays = [visible[k] - published[k] for k in published]
    return {
        "rate_per_s": rate,
        "events": len(delays),
        "poll_ms": poll_s * 1000,
        **_percentiles(delays),
    }


async def _one_by_one(
    stack: LocalStack, docs: list[tuple[str, str]], config: IndexerBenchConfig
) -> dict[str, float]:
    async with contextlib.AsyncExitStack() as closers:
        pool = await create_pool(
            stack.database_url, min_size=1, max_size=2, session_settings=default_session_settings()
        )
        closers.push_async_callback(pool.close)
        embedder = EmbedderClient(stack.embedder_address)
        closers.push_async_callback(embedder.close)
        model = await embedder.default_model(wait_s=30)
        space = await PostgresSpaces(pool).active()
        settings = _write_path(config)
        nodes = PostgresNodes(pool, text_config=settings.search_text_config)
        writer = writer_from_settings(settings, nodes, embedder, model.max_tokens)
        started = time.perf_counter()
        for i, (title, body) in enumerate(docs):
            node = NodeRecord(tenant="", id=f"b{i}", content_type="page", title=title, body=body)
            await writer.upsert(space, [node])
        elapsed = time.perf_counter() - started
    return {"documents": len(docs), "docs_per_s": round(len(docs) / elapsed, 1)}


def _write_path(config: IndexerBenchConfig) -> WritePathSettings:
    """The write path's settings of the indexers the bench runs (chunking and friends as
    the environment sets them), with the bench model's tokenizer."""
    return WritePathSettings(search_tokenizer=config.model_dir / "tokenizer.json")


def _chunk_texts(config: IndexerBenchConfig, docs: list[tuple[str, str]]) -> list[str]:
    """The texts the write path embeds for these documents (title + body, chunked)."""
    settings = _write_path(config)
    chunker = Chunker(
        settings.search_tokenizer,
        window=settings.search_chunk_window,
        overlap=settings.search_chunk_overlap,
    )
    texts = [" ".join(p for p in (t.strip(), b.strip()) if p) for t, b in docs]
    return [
        text[c.start : c.end]
        for text, chunks in zip(texts, chunker.split(texts), strict=True)
        for c in chunks
    ]


def run_indexer_bench(
    config: IndexerBenchConfig, progress: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Every measurement of the module doc; returns the JSON-ready report."""
    rng = random.Random(config.seed)
    fresh_total = config.freshness_events * len(config.rates)
    docs = documents(config, config.n + fresh_total + config.baseline_n, rng)
    main_docs = docs[: config.n]
    fresh_docs = docs[config.n : config.n + fresh_total]
    baseline_docs = docs[config.n + fresh_total :]
    rounds = max(1, min(config.rounds, config.n))
    bounds = [config.n * r // rounds for r in range(rounds + 1)]
    spans = list(itertools.pairwise(bounds))
    round_chunks = [_chunk_texts(config, main_docs[a:b]) for a, b in spans]
    chunks = [text for texts in round_chunks for text in texts]
    report: dict[str, Any] = {
        "benchmark": "indexer",
        "documents": config.n,
        "documents_from": str(config.dataset) if config.dataset else "generated (30-90 words)",
        "chunks": len(chunks),
        "intra_op_threads": config.threads,
        "embedder_workers": config.workers,
        "indexer_batch_size": config.batch_size,
        "cpus": os.cpu_count(),
    }
    metrics_port = free_port()
    indexer_env = {
        "SEMANTIC_INDEXER_HEAL_INTERVAL_S": "0",
        "SEMANTIC_INDEXER_BATCH_SIZE": str(config.batch_size),
    }
    model = load_as_served(config.model_dir, config.threads, config.workers)
    embedder_env = {
        "SEMANTIC_METRICS_PORT": str(metrics_port),
        "SEMANTIC_EMBEDDER_WORKERS": str(config.workers),
    }
    with LocalStack(
        [config.model_dir],
        threads=config.threads,
        indexer_env=indexer_env,
        embedder_env=embedder_env,
    ) as stack:
        meter = _Meter(stack, f"http://127.0.0.1:{metrics_port}/metrics")
        in_process = stack_seconds = 0.0
        per_round: list[float] = []
        spent: dict[str, float] = {}
        for index, (a, b) in enumerate(spans):
            progress(f"round {index + 1}/{rounds}: embedder in process, {b - a} documents")
            texts = round_chunks[index]
            alone = engine_seconds(model, texts, warmup=chunks[:256], workers=config.workers)[0]
            progress(f"round {index + 1}/{rounds}: indexer, {b - a} events published at once")
            before = meter.read()
            seconds = asyncio.run(_publish_all(stack, main_docs[a:b], a))
            for key, value in _spent(before, meter.read()).items():  # the stack's part only
                spent[key] = spent.get(key, 0.0) + value
            in_process += alone
            stack_seconds += seconds
            per_round.append(round(alone / seconds, 3))
        del model
        report["embedder_in_process"] = {
            "chunks_per_s": round(len(chunks) / in_process, 1),
            "docs_per_s": round(config.n / in_process, 1),
        }
        report["indexer"] = {
            "events": config.n,
            "rounds": rounds,
            "seconds": round(stack_seconds, 2),
            "events_per_s": round(config.n / stack_seconds, 1),
            "chunks_per_s": round(len(chunks) / stack_seconds, 1),
            **_usage(spent),
        }
        report["freshness"] = []
        for index, rate in enumerate(config.rates):
            progress(f"freshness at {rate:g} events/s")
            first = index * config.freshness_events
            part = fresh_docs[first : first + config.freshness_events]
            before = meter.read()
            result = asyncio.run(_freshness(stack, part, rate, config.poll_s, f"f{index}-"))
            report["freshness"].append({**result, **_usage(_spent(before, meter.read()))})
        progress("baseline: one document at a time")
        report["one_by_one_baseline"] = asyncio.run(_one_by_one(stack, baseline_docs, config))
    report["ratios"] = {
        "indexer_vs_embedder_in_process": round(in_process / stack_seconds, 3),
        "indexer_vs_embedder_in_process_by_round": per_round,
        "indexer_vs_one_by_one": round(
            report["indexer"]["events_per_s"]
            / max(report["one_by_one_baseline"]["docs_per_s"], 1e-9),
            2,
        ),
    }
    return report
