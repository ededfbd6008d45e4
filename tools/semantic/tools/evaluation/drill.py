"""`semantic drill restore`: prove that a snapshot restores a database whole.

On a throw-away embedded PostgreSQL (database ``drill``): ingest a BEIR dataset and score
it (``semantic eval``'s runner, nDCG@10 "before"), track a few views, clicks and
conversions for N synthetic users through ``Search.Track`` (so journeys, user events and
engagement counters exist), take every table's checksum, export a snapshot with
``semantic export``'s own code, drop the database and create it empty, apply the schema,
import the snapshot with ``semantic import``'s own code, take the checksums again, and
score the restored database without ingesting (nDCG@10 "after"). The drill passes when
every checksum and every score is equal.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import random
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import grpc

from semantic.store.postgres.checksums import Checksums, differing, table_checksums
from semantic.store.postgres.schema import bootstrap_schema
from semantic.tools.cli.snapshot import run_export, run_import
from semantic.tools.devstack import EmbeddedPostgres, free_port
from semantic.tools.devstack.stack import LocalStack
from semantic.tools.evaluation.beir import load_beir
from semantic.tools.evaluation.runner import MODES, EvalConfig, run_eval
from semantic.v1 import events_pb2 as epb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

DATABASE = "drill"
ACTIONS = (epb.USER_ACTION_VIEW, epb.USER_ACTION_CLICK, epb.USER_ACTION_CONVERT)
ARCHETYPES = ("reader", "researcher", "shopper")
METRIC = "ndcg@10"


@dataclass(frozen=True)
class DrillConfig:
    """What the drill runs on."""

    dataset: Path
    model_dir: Path
    users: int = 20
    events_per_user: int = 6
    modes: Sequence[str] = tuple(MODES)
    split: str = "test"
    threads: int = 2
    seed: int = 7
    ef_search: int = 1000
    """HNSW ef_search of both evaluations. The restored vectors are equal row for row, but
    the import builds the HNSW graph in another order than the ingest did, and an
    approximate search on another graph may rank a few neighbours differently; at the
    largest ef_search the search is as close to exact as the index allows, so the scores
    compare the data rather than the graph."""


def run_drill(
    config: DrillConfig, progress: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Run the whole drill on a throw-away PostgreSQL; returns the JSON-ready report
    (``equal`` is the verdict)."""
    with tempfile.TemporaryDirectory(prefix="semantic-drill-") as folder:
        postgres = EmbeddedPostgres(
            Path(folder) / "postgres",
            free_port(),
            settings={"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"},
        )
        postgres.start()
        try:
            return _drill(config, postgres, Path(folder), progress)
        finally:
            postgres.stop()


def _drill(
    config: DrillConfig,
    postgres: EmbeddedPostgres,
    folder: Path,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    postgres.create_database(DATABASE)
    url = postgres.url(DATABASE)
    eval_config = EvalConfig(
        dataset=config.dataset,
        model_dir=config.model_dir,
        modes=tuple(config.modes),
        split=config.split,
        threads=config.threads,
        database_url=url,
        search_env={"SEMANTIC_SEARCH_EF_SEARCH": str(config.ef_search)},
    )
    before = run_eval(eval_config, progress)
    progress(f"before: {_scores(before)}")
    doc_ids = sorted(load_beir(config.dataset, config.split).corpus)
    with LocalStack(
        [config.model_dir],
        threads=config.threads,
        database_url=url,
        search_env=eval_config.search_env,
    ) as stack:
        tracked = asyncio.run(_track(stack.search_address, doc_ids, config))
    progress(f"tracked {tracked} events for {config.users} users")
    source = asyncio.run(_checksums(url))

    snapshot = folder / "snapshot"
    exported = _export(url, snapshot)
    progress(f"exported in {exported['seconds']} s")
    postgres.drop_database(DATABASE)
    postgres.create_database(DATABASE)
    asyncio.run(bootstrap_schema(url, create_database=False))
    imported = _import(url, snapshot)
    progress(f"imported in {imported['seconds']} s")
    restored = asyncio.run(_checksums(url))

    after = run_eval(dataclasses.replace(eval_config, ingest=False), progress)
    progress(f"after: {_scores(after)}")
    differ = differing(source, restored)
    scores_before, scores_after = _scores(before), _scores(after)
    scores_equal = scores_before == scores_after
    return {
        "drill": "restore",
        "dataset": before["dataset"],
        "model": before["model"],
        "documents": before["documents"],
        "queries": before["queries"],
        "vectors": sum(n for k, (n, _) in source.items() if k.startswith("vectors:")),
        "users": source.get("users", (0, ""))[0],
        "events": source.get("user_events", (0, ""))[0],
        "export": {
            "seconds": exported["seconds"],
            "rows": sum(exported["files"].values()),
            "files": exported["files"],
        },
        "import": {
            "seconds": imported["seconds"],
            "rows": imported["changed"],
            "heal_needed": imported["heal_needed"],
        },
        "checksums": {
            "equal": not differ,
            "tables": len(source),
            "differ": differ,
            "rows": {k: n for k, (n, _) in sorted(source.items())},
        },
        METRIC: {
            "ef_search": config.ef_search,
            "before": scores_before,
            "after": scores_after,
            "equal": scores_equal,
        },
        "equal": not differ and scores_equal,
    }


def _scores(report: dict[str, Any]) -> dict[str, float]:
    return {mode: scores[METRIC] for mode, scores in report["modes"].items()}


async def _track(address: str, doc_ids: Sequence[str], config: DrillConfig) -> int:
    """Views, clicks and conversions of ``config.users`` synthetic users on corpus
    documents, one Track call per user; returns the events accepted."""
    rng = random.Random(config.seed)
    accepted = 0
    async with grpc.aio.insecure_channel(address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        for k in range(config.users):
            archetype = ARCHETYPES[k % len(ARCHETYPES)]
            events = [
                epb.UserEvent(
                    event_id=str(uuid.UUID(int=rng.getrandbits(128))),
                    user_id=f"drill-user-{k}",
                    node_id=rng.choice(doc_ids),
                    action=ACTIONS[i % len(ACTIONS)],
                    archetype=archetype,
                    session_id=f"drill-session-{k}",
                )
                for i in range(config.events_per_user)
            ]
            reply = await stub.Track(pb.TrackRequest(events=events), timeout=120)
            accepted += reply.accepted
    return accepted


async def _checksums(url: str) -> Checksums:
    conn = await asyncpg.connect(url)
    try:
        return await table_checksums(conn)
    finally:
        await conn.close()


@contextlib.contextmanager
def _database_url(url: str) -> Iterator[None]:
    """DATABASE_URL set to ``url`` while the CLI's export or import runs (they read it
    from the environment), their own summary line sent to stderr."""
    previous = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        if previous is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = previous


def _export(url: str, out: Path) -> dict[str, Any]:
    """`semantic export --out OUT --space all` through the CLI's own function."""
    args = argparse.Namespace(
        out=out, tenant=None, content_type=None, space="all", batch_size=5_000, json=True
    )
    return _cli_step("export", lambda sink: run_export(args, on_summary=sink), url)


def _import(url: str, path: Path) -> dict[str, Any]:
    """`semantic import PATH` (merge into the empty database) through the CLI's function."""
    args = argparse.Namespace(
        path=path, mode="merge", reembed=False, tenant=None, batch_size=5_000, json=True
    )
    return _cli_step("import", lambda sink: run_import(args, on_summary=sink), url)


def _cli_step(name: str, step: Callable[[Any], Any], url: str) -> dict[str, Any]:
    summaries: list[dict[str, Any]] = []
    with _database_url(url):
        code = asyncio.run(step(summaries.append))
    if code != 0 or not summaries:
        raise DrillFailed(f"{name} failed (exit code {code})")
    return summaries[-1]


class DrillFailed(RuntimeError):
    """A step of the drill failed outright (its reason is on stderr)."""
