"""`semantic eval-recommend`: next-item recommendation quality on a BEIR dataset's qrels.

Through the real services on a throw-away local stack (embedded PostgreSQL, the embedder
with the chosen model, the search service, auth disabled):

1. The corpus is upserted through ``Search.Upsert`` (the same ingestion as ``semantic eval``).
2. Sessions come from the split's qrels (:func:`sessions.build_sessions`): each query with
   two or more relevant documents is one user; its relevant documents, in an order shuffled
   by the seed, are the journey; the last one is held out.
3. Every user's history is sent as VIEW events through ``Search.Track`` (at most 1,000 events
   per call, one second apart in journey order), all users first, so the engagement counters
   every method may use include every user.
4. Each user is then asked for through ``Search.Recommend(user_id, top_k=10,
   exclude_seen=True)`` and scored on the held-out document: hit rate@10 and nDCG@10 (one
   relevant item: 1 / log2(rank + 1)), as the metrics module computes them.

Baselines in the same run, each excluding the user's seen (history) documents too:

- ``popularity``: the documents most viewed by all users, as Track counted them
  (``semantic.node_engagement.views``; ties by id);
- ``nearest_to_last``: ``Search.Nearest`` of the last document of the user's history;
- ``random``: documents drawn uniformly (seeded) from the corpus.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import numpy as np

from semantic.tools.devstack.stack import LocalStack
from semantic.tools.evaluation.beir import BeirDataset, load_beir
from semantic.tools.evaluation.metrics import RECOMMENDATION_METRICS, evaluate
from semantic.tools.evaluation.runner import ingest_corpus
from semantic.tools.evaluation.sessions import Session, build_sessions, session_qrels
from semantic.tools.progress import progress_bar
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import events_pb2 as epb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

METHODS = ("journey", "popularity", "nearest_to_last", "random")
TRACK_BATCH = 1000
"""Events per Track call (the service's default maximum)."""


@dataclass(frozen=True)
class RecommendEvalConfig:
    """What to evaluate."""

    dataset: Path
    model_dir: Path
    split: str = "test"
    seed: int = 0
    max_users: int | None = None
    top_k: int = 10
    threads: int = 2
    batch: int = 32
    concurrency: int = 2


Run = dict[str, list[str]]


def view_events(sessions: Sequence[Session], start: datetime) -> list[epb.UserEvent]:
    """Every session's history as VIEW events, one second apart in journey order."""
    events = []
    for session in sessions:
        for position, doc_id in enumerate(session.history):
            event = epb.UserEvent(
                event_id=f"{session.user_id}:{position}",
                user_id=session.user_id,
                node_id=doc_id,
                action=epb.USER_ACTION_VIEW,
                source="eval-recommend",
            )
            event.occurred_at.FromDatetime(start + timedelta(seconds=position))
            events.append(event)
    return events


def popular_ranking(views: dict[str, int], seen: set[str], k: int) -> list[str]:
    """The ``k`` most viewed documents not in ``seen`` (most views first, ties by id)."""
    ordered = sorted(views.items(), key=lambda item: (-item[1], item[0]))
    out: list[str] = []
    for doc_id, count in ordered:
        if count <= 0 or len(out) == k:
            break
        if doc_id not in seen:
            out.append(doc_id)
    return out


def random_ranking(
    doc_ids: Sequence[str], seen: set[str], k: int, rng: np.random.Generator
) -> list[str]:
    """``k`` documents drawn uniformly without replacement from ``doc_ids`` minus ``seen``."""
    draw = min(len(doc_ids), k + len(seen))
    picked = rng.choice(len(doc_ids), size=draw, replace=False)
    return [doc_ids[i] for i in picked if doc_ids[i] not in seen][:k]


async def _track_all(
    stub: search_pb2_grpc.SearchStub, events: Sequence[epb.UserEvent]
) -> dict[str, int]:
    accepted = duplicates = unknown = 0
    with progress_bar(len(events), "events") as bar:
        for start in range(0, len(events), TRACK_BATCH):
            batch = events[start : start + TRACK_BATCH]
            reply = await stub.Track(pb.TrackRequest(events=batch), timeout=600)
            accepted += reply.accepted
            duplicates += reply.duplicates
            unknown += len(reply.unknown_node_events)
            bar.update(len(batch))
    return {"accepted": accepted, "duplicates": duplicates, "unknown": unknown}


async def _views(database_url: str) -> dict[str, int]:
    """VIEW counts per node as Track stored them."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT node_id, views FROM semantic.node_engagement WHERE tenant = ''"
        )
    finally:
        await conn.close()
    return {r["node_id"]: int(r["views"]) for r in rows}


async def _each(
    sessions: Sequence[Session],
    ask: Callable[[Session], Awaitable[list[str]]],
    concurrency: int,
) -> Run:
    """``ask`` for every session with ``concurrency`` calls in flight."""
    run: Run = {}
    pending = list(reversed(sessions))

    async def worker() -> None:
        while pending:
            session = pending.pop()
            run[session.user_id] = await ask(session)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return run


async def _evaluate(
    stack: LocalStack,
    data: BeirDataset,
    sessions: Sequence[Session],
    config: RecommendEvalConfig,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    k = config.top_k
    async with grpc.aio.insecure_channel(stack.search_address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        started = time.perf_counter()
        vectors = await ingest_corpus(
            stub, data, batch=config.batch, concurrency=config.concurrency
        )
        ingest_s = time.perf_counter() - started
        progress(f"ingested {len(data.corpus)} documents ({vectors} vectors) in {ingest_s:.0f} s")

        longest = max(len(s.history) for s in sessions)
        start = datetime.now(UTC) - timedelta(days=1, seconds=longest)
        events = view_events(sessions, start)
        started = time.perf_counter()
        tracked = await _track_all(stub, events)
        track_s = time.perf_counter() - started
        progress(f"tracked {len(events)} VIEW events in {track_s:.0f} s: {tracked}")

        async def journey(session: Session) -> list[str]:
            request = pb.RecommendRequest(user_id=session.user_id, top_k=k, exclude_seen=True)
            reply = await stub.Recommend(request, timeout=120)
            return [hit.node.id for hit in reply.hits]

        async def nearest_to_last(session: Session) -> list[str]:
            request = pb.NearestRequest(
                id=session.history[-1],
                top_k=k,
                filter=cpb.Filter(exclude_ids=list(session.history)),
            )
            reply = await stub.Nearest(request, timeout=120)
            return [hit.node.id for hit in reply.hits]

        runs: dict[str, Run] = {}
        started = time.perf_counter()
        runs["journey"] = await _each(sessions, journey, config.concurrency)
        progress(
            f"journey: {len(sessions)} Recommend calls in {time.perf_counter() - started:.0f} s"
        )
        runs["nearest_to_last"] = await _each(sessions, nearest_to_last, config.concurrency)

    views = await _views(stack.database_url)
    runs["popularity"] = {s.user_id: popular_ranking(views, set(s.history), k) for s in sessions}
    rng = np.random.default_rng(config.seed)
    doc_ids = sorted(data.corpus)
    runs["random"] = {s.user_id: random_ranking(doc_ids, set(s.history), k, rng) for s in sessions}

    qrels = session_qrels(sessions)
    methods = {}
    for name in METHODS:
        scores = evaluate(runs[name], qrels, RECOMMENDATION_METRICS)
        methods[name] = {metric: round(value, 4) for metric, value in scores.items()}
        progress(f"{name}: {methods[name]}")
    return {
        "documents": len(data.corpus),
        "vectors": vectors,
        "events": len(events),
        "events_accepted": tracked["accepted"],
        "ingest_seconds": round(ingest_s, 1),
        "track_seconds": round(track_s, 1),
        "methods": methods,
    }


def run_recommend_eval(
    config: RecommendEvalConfig, progress: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Build the stack, ingest, track the histories, recommend; returns the JSON-ready report."""
    if config.max_users is not None and config.max_users < 1:
        raise ValueError(f"max_users must be at least 1, got {config.max_users}")
    data = load_beir(config.dataset, config.split)
    sessions = build_sessions(data, config.seed)
    if config.max_users is not None:
        sessions = sessions[: config.max_users]
    if not sessions:
        raise ValueError(
            f"no query of split {config.split!r} has 2 or more relevant documents in the corpus"
        )
    progress(
        f"loaded {data.name}: {len(data.corpus)} documents, {len(sessions)} users "
        f"({sum(len(s.history) for s in sessions)} history documents)"
    )
    manifest = (config.model_dir / "manifest.json").read_text()
    model_id = json.loads(manifest)["model_id"]
    with LocalStack([config.model_dir], threads=config.threads) as stack:
        report = asyncio.run(_evaluate(stack, data, sessions, config, progress))
    methods = report.pop("methods")
    return {
        "dataset": data.name,
        "model": model_id,
        "users": len(sessions),
        "methods": methods,
        "split": config.split,
        "seed": config.seed,
        "top_k": config.top_k,
        **report,
    }
