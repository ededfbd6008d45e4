"""`semantic backfill`, `semantic heal`, `semantic reindex` and `semantic rollback`.

backfill and heal run in this process against DATABASE_URL and the embedder at
SEMANTIC_EMBEDDER_ADDRESS (the indexer's settings); heal then runs relation discovery over
the active space until no node is due (SEMANTIC_RELATIONS_* settings). reindex and rollback
call the search service's Admin API at SEMANTIC_SEARCH_ADDRESS, with the token in
SEMANTIC_TOKEN when the service checks tokens; reindex waits for the build and shows its
progress.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    import asyncpg

    from semantic.core.discovery import DiscoveryReport
    from semantic.core.spaces import ActiveSpaces, Space


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the four commands."""
    backfill = sub.add_parser(
        "backfill",
        help="re-embed stored nodes into the active space, with a progress bar",
        description="Re-embed every node (or only those without vectors) of the active space "
        "through the embedder; one transaction per batch. Reads DATABASE_URL and "
        "SEMANTIC_EMBEDDER_ADDRESS.",
    )
    backfill.add_argument("--only-missing", action="store_true", help="only nodes without vectors")
    heal = sub.add_parser(
        "heal",
        help="re-embed nodes whose vectors are missing or stale, once",
        description="One heal pass (what the indexer's heal loop runs periodically), then "
        "relation discovery over the active space until no node is due (when "
        "SEMANTIC_RELATIONS_DISCOVER is on).",
    )
    heal.add_argument("--dry-run", action="store_true", help="count only, write nothing")
    heal.add_argument(
        "--no-discover", action="store_true", help="skip relation discovery after the pass"
    )
    for command in (backfill, heal):
        command.add_argument(
            "--type", dest="content_type", type=_content_type, help="only this content type"
        )
        command.add_argument(
            "--batch-size",
            type=_positive,
            default=None,
            help="nodes per embed+write batch (default: SEMANTIC_INDEXER_HEAL_BATCH_SIZE)",
        )
        command.add_argument("--space", type=_space, help="space id (default: the active space)")
        command.add_argument("--json", action="store_true", help="print the summary as JSON")

    reindex = sub.add_parser(
        "reindex",
        help="build a new embedding space for a model, then switch to it",
        description="Ask the search service to build a space for the model (a directory the "
        "embedder can read, or a model id it serves), wait and show progress. Search keeps "
        "serving the current space until the new one is complete; the switch is one "
        "transaction. Reads SEMANTIC_SEARCH_ADDRESS and SEMANTIC_TOKEN.",
    )
    which = reindex.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", type=Path, help="model directory")
    which.add_argument("--model-id", help="id of a model the embedder serves")
    reindex.add_argument(
        "--manual", action="store_true", help="leave the space READY; switch with `activate`"
    )
    reindex.add_argument("--force-new", action="store_true", help="build even if one exists")
    reindex.add_argument("--no-wait", action="store_true", help="return once started")
    reindex.add_argument("--timeout", type=float, default=0, help="give up waiting after N s")
    sub.add_parser(
        "rollback",
        help="switch search back to the previous embedding space",
        description="Point the active alias back at the previous space (one transaction).",
    )
    activate = sub.add_parser("activate", help="switch search to a READY embedding space")
    activate.add_argument("space", help="space id")
    sub.add_parser("spaces", help="list the embedding spaces")
    archetypes = sub.add_parser(
        "archetypes",
        help="cluster users' journeys into derived archetypes, once",
        description="k-means over journey vectors per tenant (what the indexer's heal loop "
        "runs periodically). Reads DATABASE_URL.",
    )
    archetypes.add_argument("--k", type=int, default=8, help="archetypes per tenant")
    archetypes.add_argument("--min-events", type=int, default=3, help="events per user")


def _argument(rule: Callable[[str, str], Any], flag: str) -> Callable[[str], Any]:
    """An argparse ``type`` applying a validation rule; its refusal is a usage error."""
    from semantic.common.errors import InvalidArgument

    def checked(text: str) -> Any:
        try:
            return rule(text, flag)
        except InvalidArgument as exc:
            raise argparse.ArgumentTypeError(exc.problem) from exc

    return checked


def _space(text: str) -> int:
    """A ``--space`` value: a space id (1 to 2^31 - 1), refused by argparse otherwise."""
    from semantic.common.validation import space_id

    chosen = _argument(space_id, "--space")(text)
    if chosen is None:
        raise argparse.ArgumentTypeError("give a space id, or leave --space out")
    return int(chosen)


def _content_type(text: str) -> str:
    """A ``--type`` value: a content type as nodes carry them ([a-z][a-z0-9_]{0,63})."""
    from semantic.common.validation import name

    return str(_argument(name, "--type")(text))


def _positive(text: str) -> int:
    """A count of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def run(args: argparse.Namespace) -> int:
    """Run one of the commands; exit code 0 on success."""
    if args.command in ("backfill", "heal"):
        return asyncio.run(_heal(args))
    if args.command == "archetypes":
        return asyncio.run(_archetypes(args))
    return asyncio.run(_admin(args))


class ProgressBar:
    """A one-line progress bar on a terminal, a line per 10% otherwise."""

    def __init__(self, label: str, out: TextIO | None = None) -> None:
        self._label = label
        stream = out if out is not None else sys.stderr  # the current one, not import time's
        usable = stream is not None and not getattr(stream, "closed", False)
        self._out: TextIO | None = stream if usable else None
        self._tty = bool(self._out is not None and self._out.isatty())
        self._last_decile = -1
        self._started = time.perf_counter()

    def update(self, done: int, total: int, extra: str = "") -> None:
        """Show ``done`` of ``total``."""
        share = done / total if total else 1.0
        elapsed = time.perf_counter() - self._started
        rate = done / elapsed if elapsed > 0 else 0.0
        text = f"{self._label} {done}/{total} ({share:.0%}) {rate:.0f}/s {extra}".rstrip()
        if self._out is None:
            return
        if self._tty:
            filled = int(share * 30)
            self._out.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {text}")
            self._out.flush()
        elif int(share * 10) > self._last_decile:
            self._last_decile = int(share * 10)
            self._out.write(text + "\n")

    def close(self) -> None:
        """End the bar's line."""
        if self._tty and self._out is not None:
            self._out.write("\n")
            self._tty = False  # once


async def _heal(args: argparse.Namespace) -> int:
    from semantic.common.embedder_client import EmbedderClient
    from semantic.common.errors import SemanticError
    from semantic.core.maintenance import HealMode, HealReport, Maintenance
    from semantic.core.settings import MaintenanceSettings, WritePathSettings
    from semantic.core.spaces import ActiveSpaces
    from semantic.core.writer import writer_from_settings
    from semantic.store.postgres.db import create_pool, default_session_settings
    from semantic.store.postgres.maintenance import PostgresMaintenance
    from semantic.store.postgres.nodes import PostgresNodes
    from semantic.store.postgres.spaces import PostgresSpaces

    settings = WritePathSettings()
    if settings.database_url is None:
        print("DATABASE_URL is not set", file=sys.stderr)
        return 2
    if not settings.search_tokenizer.is_file():  # chunking needs it before anything is read
        print(
            f"SEMANTIC_SEARCH_TOKENIZER: no file at {settings.search_tokenizer}"
            f" (from {Path.cwd()}); set it to the model's tokenizer.json",
            file=sys.stderr,
        )
        return 2
    try:
        pool = await create_pool(
            settings.dsn(), min_size=1, max_size=4, session_settings=default_session_settings()
        )
    except SemanticError as exc:  # PostgreSQL unreachable: said, not a traceback
        print(f"{args.command} failed: {exc}", file=sys.stderr)
        return 1
    embedder = EmbedderClient(settings.embedder_address)
    bar = ProgressBar("scanned")
    try:
        model = await embedder.default_model(wait_s=10)
        nodes = PostgresNodes(pool, text_config=settings.search_text_config)
        writer = writer_from_settings(settings, nodes, embedder, model.max_tokens)
        active = ActiveSpaces(PostgresSpaces(pool))
        maintenance = Maintenance(
            PostgresMaintenance(pool),
            active,
            writer,
            batch_size=max(1, args.batch_size or MaintenanceSettings().indexer_heal_batch_size),
        )
        space = await active.space(args.space)

        def progress(report: HealReport, total: int) -> None:
            bar.update(report.scanned, total, f"re-embedded {report.reembedded}")

        mode: HealMode = (
            "heal" if args.command == "heal" else "missing" if args.only_missing else "all"
        )
        report = await maintenance.heal(
            space,
            mode=mode,
            content_type=args.content_type,
            dry_run=getattr(args, "dry_run", False),
            progress=progress,
        )
        bar.close()
        discovered: DiscoveryReport | None = None
        if args.command == "heal" and not args.no_discover:
            discovered = await _discover(pool, active, space, dry_run=args.dry_run)
    except SemanticError as exc:
        bar.close()
        print(f"{args.command} failed: {exc}", file=sys.stderr)
        return 1
    finally:
        await embedder.close()
        await pool.close()
    summary = {"command": args.command, "space": space.id, "mode": mode, **report.as_dict()}
    if args.command == "heal":
        summary["discovery"] = discovered.as_dict() if discovered is not None else None
    if args.json:
        print(json.dumps(summary))
    else:
        line = (
            f"{args.command}: space {space.id}, scanned {report.scanned}, missing "
            f"{report.missing}, stale {report.stale}, re-embedded {report.reembedded}, "
            f"failed {report.failed}, orphaned vector rows {report.orphans}"
            f" in {report.duration_s:.1f}s"
        )
        if discovered is not None:
            line += (
                f"; discovery: examined {discovered.examined}, added {discovered.added},"
                f" updated {discovered.updated}, removed {discovered.removed},"
                f" due {discovered.pending} in {discovered.duration_s:.1f}s"
            )
        print(line)
    return 0 if report.failed == 0 else 1


async def _discover(
    pool: asyncpg.Pool, active: ActiveSpaces, space: Space, *, dry_run: bool
) -> DiscoveryReport | None:
    """Relation discovery over ``space`` until no node is due (a dry run only counts the
    due nodes); None when it is off or ``space`` is not the active space."""
    from semantic.core.discovery import DiscoveryReport, RelationDiscovery
    from semantic.core.settings import RelationDiscoverySettings
    from semantic.store.postgres.discovery import PostgresDiscovery

    settings = RelationDiscoverySettings()
    if not settings.relations_discover or space.id != (await active.space()).id:
        return None
    discovery = RelationDiscovery(PostgresDiscovery(pool), settings.discovery_config())
    if dry_run:
        return DiscoveryReport(pending=await discovery.pending(space))
    bar = ProgressBar("discovery: examined")

    def progress(report: DiscoveryReport) -> None:
        done = report.examined
        bar.update(done, done + (report.pending or 0), f"added {report.added}")

    try:
        return await discovery.run(space, progress=progress)
    finally:
        bar.close()


async def _archetypes(args: argparse.Namespace) -> int:
    from semantic.common.errors import SemanticError
    from semantic.core.recommend.archetypes import ArchetypeRefresh
    from semantic.core.recommend.settings import RecommendSettings
    from semantic.core.settings import WritePathSettings
    from semantic.store.postgres.archetype_rows import ArchetypeStore
    from semantic.store.postgres.db import create_pool, default_session_settings
    from semantic.store.postgres.spaces import PostgresSpaces

    settings = WritePathSettings()
    if settings.database_url is None:
        print("DATABASE_URL is not set", file=sys.stderr)
        return 2
    try:
        pool = await create_pool(
            settings.dsn(), min_size=1, max_size=2, session_settings=default_session_settings()
        )
        try:
            space = await PostgresSpaces(pool).active()
            refresh = ArchetypeRefresh(ArchetypeStore(pool), RecommendSettings().track_config())
            done = await refresh.derive(space, k=args.k, min_events=args.min_events)
        finally:
            await pool.close()
    except SemanticError as exc:  # PostgreSQL unreachable, no active space: said plainly
        print(f"archetypes failed: {exc}", file=sys.stderr)
        return 1
    for result in done:
        print(f"tenant {result.tenant or '_'}: {result.users} users, {result.clusters} archetypes")
    return 0


async def _admin(args: argparse.Namespace) -> int:
    import grpc

    from semantic.v1 import search_pb2 as pb
    from semantic.v1 import search_pb2_grpc

    address = os.environ.get("SEMANTIC_SEARCH_ADDRESS", "127.0.0.1:50052")
    token = os.environ.get("SEMANTIC_TOKEN", "")
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    async with grpc.aio.insecure_channel(address) as channel:
        admin = search_pb2_grpc.AdminStub(channel)
        try:
            if args.command == "rollback":
                reply = await admin.Rollback(pb.RollbackRequest(), metadata=metadata)
                print(
                    f"active space: {reply.current.id} ({reply.current.model_id}); "
                    f"left {reply.previous.id}"
                )
                return 0
            if args.command == "activate":
                done = await admin.ActivateSpace(
                    pb.ActivateSpaceRequest(space_id=args.space), metadata=metadata
                )
                print(f"active space: {done.current.id} ({done.current.model_id})")
                return 0
            if args.command == "spaces":
                listed = await admin.ListSpaces(pb.ListSpacesRequest(), metadata=metadata)
                for space in listed.spaces:
                    print(_space_line(space, pb))
                return 0
            return await _reindex(args, admin, pb, metadata)
        except grpc.aio.AioRpcError as exc:
            print(f"{args.command} failed: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1


async def _reindex(args: argparse.Namespace, admin: Any, pb: Any, metadata: Any) -> int:
    request = pb.ReindexRequest(manual_activation=args.manual, force_new=args.force_new)
    if args.model is not None:
        request.model_dir = str(args.model.resolve())
    else:
        request.model_id = args.model_id
    reply = await admin.Reindex(request, metadata=metadata)
    space = reply.space
    print(("created " if reply.created else "existing ") + _space_line(space, pb))
    if args.no_wait:
        return 0
    bar = ProgressBar(f"space {space.id}")
    started = time.monotonic()
    while space.state == pb.SPACE_STATE_BUILDING:
        if args.timeout and time.monotonic() - started > args.timeout:
            bar.close()
            print("still building; check with `semantic spaces`", file=sys.stderr)
            return 1
        await asyncio.sleep(1.0)
        listed = await admin.ListSpaces(pb.ListSpacesRequest(), metadata=metadata)
        space = next(s for s in listed.spaces if s.id == space.id)
        bar.update(space.build.nodes_done, space.build.nodes_total)
    bar.close()
    print(_space_line(space, pb))
    return 0 if space.state in (pb.SPACE_STATE_ACTIVE, pb.SPACE_STATE_READY) else 1


def _space_line(space: Any, pb: Any) -> str:
    state = pb.SpaceState.Name(space.state).removeprefix("SPACE_STATE_").lower()
    precision = pb.IndexPrecision.Name(space.index_precision).removeprefix("INDEX_PRECISION_")
    return (
        f"space {space.id}: {space.model_id} v{space.version} ({space.model_sha256[:12]}) "
        f"{state}, {space.vectors} vectors, {precision.lower()} index"
    )
