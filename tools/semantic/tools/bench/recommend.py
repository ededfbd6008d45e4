"""`semantic bench recommend`: Track and Recommend latency through gRPC at N nodes and U users.

Data: N nodes with 384-d vectors shaped like sentence embeddings, loaded as the search bench
loads them (:class:`semantic.tools.bench.corpus.EmbeddingLike` and
:func:`semantic.tools.bench.corpus.load_corpus`: COPY, then the HNSW index built by the product's
DDL), on a throw-away embedded PostgreSQL sized for its data (``shared_buffers`` as in the
search bench). Every node is assigned to the nearest of 200 anchor nodes (a topic); each of U
users follows one topic and touches ``events_per_user`` of its nodes (mostly VIEWs, some
CLICKs, LIKEs and CONVERTs, over the last week). Those events go in through gRPC
``Search.Track`` in batches of 1,000 (whole users per batch), so journeys, user-node states
and engagement counters are the ones the product derives.

Measured through gRPC against the search service process (``LocalStack``, auth disabled),
one client, one call at a time, after a warm-up, in interleaved rounds (one call of each
kind per round, so every kind sees the same machine):

- ``track_single_event``: ``Track`` with one VIEW event of a tracked user;
- ``recommend_journey``: ``Recommend(user_id, top_k=10, exclude_seen=True)`` for a random
  tracked user (journey candidates, popular candidates, exclusions, explanations);
- ``recommend_cold``: ``Recommend(user_id, top_k=10)`` for a user without history (popular);
- baseline, same run: ``Search`` dense with a vector query, top_k 10.

Timings are reported, never asserted; ``vs_search`` divides each Recommend percentile by
the same percentile of Search in the same rounds, and ``goals_met`` compares the journey and
cold p99 with 1.5x the Search p99.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from semantic.tools.bench.corpus import (
    SHARED_BUFFERS,
    EmbeddingLike,
    load_corpus,
    percentiles,
    tuned_stack,
    wait_for_local_index,
)
from semantic.tools.devstack.stack import LocalStack
from semantic.tools.progress import progress_bar
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import events_pb2 as epb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

GOALS = {"recommend_p99_vs_search_p99": 1.5}
TRACK_BATCH = 1000
ACTIONS = (
    epb.USER_ACTION_VIEW,
    epb.USER_ACTION_CLICK,
    epb.USER_ACTION_LIKE,
    epb.USER_ACTION_CONVERT,
)
ACTION_SHARES = (0.7, 0.2, 0.07, 0.03)


@dataclass(frozen=True)
class RecommendBenchConfig:
    """What to measure."""

    model_dir: Path
    nodes: int = 100_000
    users: int = 10_000
    events_per_user: int = 10
    queries: int = 300
    warmup: int = 50
    dim: int = 384
    clusters: int = 200
    top_k: int = 10
    seed: int = 7


def topics(
    vectors: np.ndarray[Any, Any], count: int, rng: np.random.Generator, chunk: int = 20_000
) -> np.ndarray[Any, Any]:
    """For each vector, which of ``count`` randomly chosen anchor vectors it is most similar
    to (one k-means assignment step: groups of related nodes, whatever drew them)."""
    anchors = vectors[rng.choice(len(vectors), size=min(count, len(vectors)), replace=False)]
    out = np.empty(len(vectors), np.int64)
    for start in range(0, len(vectors), chunk):
        out[start : start + chunk] = np.argmax(vectors[start : start + chunk] @ anchors.T, axis=1)
    return out


def user_events(
    config: RecommendBenchConfig, topic_of: np.ndarray[Any, Any], rng: np.random.Generator
) -> list[list[epb.UserEvent]]:
    """Each user's events: one topic, ``events_per_user`` of its nodes, the past week."""
    members: dict[int, np.ndarray[Any, Any]] = {}
    order = np.argsort(topic_of, kind="stable")
    bounds = np.searchsorted(topic_of[order], np.arange(topic_of.max() + 2))
    for t in range(len(bounds) - 1):
        if bounds[t + 1] > bounds[t]:
            members[t] = order[bounds[t] : bounds[t + 1]]
    names = sorted(members)
    now = datetime.now(UTC)
    out = []
    for u in range(config.users):
        pool = members[names[int(rng.integers(0, len(names)))]]
        picked = rng.choice(
            pool, size=config.events_per_user, replace=len(pool) < config.events_per_user
        )
        actions = rng.choice(len(ACTIONS), size=config.events_per_user, p=ACTION_SHARES)
        ages = np.sort(rng.uniform(60, 7 * 86400, size=config.events_per_user))[::-1]
        events = []
        for j, (node, action, age) in enumerate(zip(picked, actions, ages, strict=True)):
            event = epb.UserEvent(
                event_id=f"u{u}-{j}",
                user_id=f"u{u}",
                node_id=f"n{int(node)}",
                action=ACTIONS[int(action)],
            )
            event.occurred_at.FromDatetime(now - timedelta(seconds=float(age)))
            events.append(event)
        out.append(events)
    return out


async def _timed(call: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    reply = await call()
    return (time.perf_counter() - started) * 1000, reply


async def _measure(
    stack: LocalStack, config: RecommendBenchConfig, progress: Callable[[str], None]
) -> dict[str, Any]:
    rng = np.random.default_rng(config.seed)
    shape = EmbeddingLike(config.dim, config.clusters, rng)
    progress(f"drawing {config.nodes} vectors")
    data = shape.documents(config.nodes, rng)
    queries = shape.queries(config.queries + config.warmup, rng)
    progress(f"loading {config.nodes} nodes with COPY, then the HNSW index")
    load = await load_corpus(stack.database_url, data, rng)
    progress(f"loaded: {load}; waiting for the service's local index")
    load["local_index_sync_seconds"] = await wait_for_local_index(
        stack.search_address, config.nodes
    )
    topic_of = topics(data, config.clusters, rng)
    histories = user_events(config, topic_of, rng)
    total_events = sum(len(h) for h in histories)
    per_call = max(1, TRACK_BATCH // config.events_per_user)

    async with grpc.aio.insecure_channel(stack.search_address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        progress(f"tracking {total_events} events of {config.users} users")
        started = time.perf_counter()
        accepted = 0
        with progress_bar(total_events, "events") as bar:
            for start in range(0, len(histories), per_call):
                batch = [e for h in histories[start : start + per_call] for e in h]
                reply = await stub.Track(pb.TrackRequest(events=batch), timeout=600)
                accepted += reply.accepted
                bar.update(len(batch))
        track_s = time.perf_counter() - started
        progress(f"tracked {accepted} events in {track_s:.0f} s")

        def track_call(i: int) -> Callable[[], Awaitable[Any]]:
            u = int(rng.integers(0, config.users))
            node = histories[u][int(rng.integers(0, config.events_per_user))].node_id
            event = epb.UserEvent(
                event_id=f"single-{i}", user_id=f"u{u}", node_id=node, action=epb.USER_ACTION_VIEW
            )
            return lambda: stub.Track(pb.TrackRequest(events=[event]))

        def recommend_call(user: str, exclude_seen: bool) -> Callable[[], Awaitable[Any]]:
            request = pb.RecommendRequest(
                user_id=user, top_k=config.top_k, exclude_seen=exclude_seen
            )
            return lambda: stub.Recommend(request)

        def search_call(q: np.ndarray[Any, Any]) -> Callable[[], Awaitable[Any]]:
            request = pb.SearchRequest(
                vector=cpb.Vector(packed=q.astype("<f4").tobytes()),
                mode=pb.SEARCH_MODE_DENSE,
                top_k=config.top_k,
            )
            return lambda: stub.Search(request)

        def journey_user() -> str:
            return f"u{int(rng.integers(0, config.users))}"

        def round_of(i: int, q: np.ndarray[Any, Any], tag: str) -> dict[str, Callable[[], Any]]:
            return {
                "track": track_call(i),
                "journey": recommend_call(journey_user(), True),
                "cold": recommend_call(f"cold-{tag}{i}", False),
                "search": search_call(q),
            }

        progress("warming up")
        for i in range(config.warmup):
            for call in round_of(-1 - i, queries[config.queries + i], "warm").values():
                await call()
        progress(f"measuring: {config.queries} rounds of Track, Recommend x2, Search")
        samples: dict[str, list[float]] = {k: [] for k in ("track", "journey", "cold", "search")}
        sources: dict[str, set[str]] = {"journey": set(), "cold": set()}
        hits: dict[str, list[int]] = {"journey": [], "cold": []}
        for i in range(config.queries):  # interleaved: every kind sees the same conditions
            for kind, call in round_of(i, queries[i], "").items():
                ms, reply = await _timed(call)
                samples[kind].append(ms)
                if kind in sources:
                    hits[kind].append(len(reply.hits))
                    sources[kind].update(
                        pb.RecommendSource.Name(h.explanation.source) for h in reply.hits
                    )

    journey, cold = percentiles(samples["journey"]), percentiles(samples["cold"])
    search = percentiles(samples["search"])
    return {
        "data": {
            "kind": "embedding-like clusters (semantic.tools.bench.corpus.EmbeddingLike)",
            "clusters": config.clusters,
            "topics_with_nodes": len(set(topic_of.tolist())),
            "events": total_events,
            "actions": dict(zip(("view", "click", "like", "convert"), ACTION_SHARES, strict=True)),
        },
        "setup": {
            "load": "COPY, then HNSW built by the product DDL (m=16, ef_construction=64)",
            **load,
            "shared_buffers": SHARED_BUFFERS,
            "track_batches_seconds": round(track_s, 1),
            "track_batch_events_per_s": round(accepted / track_s, 1) if track_s else None,
        },
        "track_single_event": percentiles(samples["track"]),
        "recommend_journey": {
            **journey,
            "hits_mean": round(statistics.fmean(hits["journey"]), 2),
            "sources": sorted(sources["journey"]),
        },
        "recommend_cold": {
            **cold,
            "hits_mean": round(statistics.fmean(hits["cold"]), 2),
            "sources": sorted(sources["cold"]),
        },
        "baseline_search_dense_vector": search,
        "vs_search": {
            "journey_p50": round(journey["p50_ms"] / search["p50_ms"], 3),
            "journey_p99": round(journey["p99_ms"] / search["p99_ms"], 3),
            "cold_p99": round(cold["p99_ms"] / search["p99_ms"], 3),
        },
        "goals_met": {
            "recommend_journey_p99<=1.5x_search_p99": journey["p99_ms"]
            <= GOALS["recommend_p99_vs_search_p99"] * search["p99_ms"],
            "recommend_cold_p99<=1.5x_search_p99": cold["p99_ms"]
            <= GOALS["recommend_p99_vs_search_p99"] * search["p99_ms"],
        },
    }


def run_recommend_bench(
    config: RecommendBenchConfig, progress: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Build a local stack on a tuned throw-away PostgreSQL, load, track, measure; returns the
    JSON-ready report."""
    with tuned_stack(config.model_dir, threads=1) as stack:
        report = asyncio.run(_measure(stack, config, progress))
    return {
        "benchmark": "recommend",
        "nodes": config.nodes,
        "users": config.users,
        "events_per_user": config.events_per_user,
        "queries": config.queries,
        "dim": config.dim,
        **report,
    }
