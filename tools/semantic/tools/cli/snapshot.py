"""`semantic export` and `semantic import`: portable snapshots in Semantic's own format.

export reads DATABASE_URL in one REPEATABLE READ, read-only transaction and writes a
directory (or a ``.tar`` of it when PATH ends in ``.tar``) holding ``manifest.json`` and one
Parquet file per table; it writes into a temporary folder next to PATH and renames it at the
end, so a failed export leaves nothing behind. import verifies the whole snapshot first
(format, every file's size and sha256, schema compatibility), loads it in one transaction,
then, when vectors were not kept, heals the active space through the embedder at
SEMANTIC_EMBEDDER_ADDRESS. The format and the rules are in README_vector.md, "Snapshots".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm import tqdm


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `export` and `import`."""
    export = sub.add_parser(
        "export",
        help="write a portable snapshot (manifest + Parquet files) of DATABASE_URL",
        description="Export nodes, vectors, tombstones, keyword postings and the "
        "recommendation tables from one consistent point in time. Reads DATABASE_URL.",
    )
    export.add_argument("--out", required=True, type=Path, help="directory, or a file.tar")
    export.add_argument("--tenant", action="append", help="only this tenant (repeatable)")
    export.add_argument(
        "--content-type", action="append", help="only nodes of this type (repeatable)"
    )
    export.add_argument(
        "--space", default="active", help="vectors of space ID, 'all' or 'active' (default)"
    )
    imp = sub.add_parser(
        "import",
        help="load a snapshot into DATABASE_URL (verified first, one transaction)",
        description="Verify then load a snapshot written by `semantic export`. merge keeps "
        "stored nodes that are newer; replace clears the tenants first. Vectors are kept when "
        "the model matches a space of the database, otherwise the active space is healed "
        "through the embedder (SEMANTIC_EMBEDDER_ADDRESS).",
    )
    imp.add_argument("path", type=Path, help="snapshot directory or .tar")
    imp.add_argument("--mode", choices=("merge", "replace"), default="merge")
    imp.add_argument("--reembed", action="store_true", help="keep no vector; re-embed all")
    imp.add_argument("--tenant", action="append", help="only this tenant (repeatable)")
    for command in (export, imp):
        command.add_argument("--batch-size", type=int, default=5_000, help="rows per batch")
        command.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    """Run `export` or `import`; exit code 0 on success, 1 with the reason on stderr.

    Every failure before the import's commit leaves the database unchanged (one
    transaction) and an export's PATH untouched (written to a temporary folder)."""
    import asyncpg
    import pyarrow as pa

    from semantic.common.errors import SemanticError

    try:
        _validate(args)
        if args.command == "export":
            return asyncio.run(run_export(args))
        return asyncio.run(run_import(args))
    except (SemanticError, asyncpg.PostgresError, OSError, pa.ArrowException) as exc:
        print(f"{args.command} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def _validate(args: argparse.Namespace) -> None:
    """The arguments' rules: tenant and content-type names, a batch size, a space."""
    from semantic.common import validation
    from semantic.common.errors import InvalidArgument

    for tenant in args.tenant or ():
        validation.tenant(tenant, "--tenant")
    for content_type in getattr(args, "content_type", None) or ():
        validation.name(content_type, "--content-type")
    validation.integer(args.batch_size, "--batch-size", minimum=1, maximum=100_000)
    space = getattr(args, "space", "active")
    if space not in ("all", "active") and not (
        space.isascii() and space.isdigit() and 0 < int(space) < 2**31
    ):
        raise InvalidArgument("--space", f"{space!r} is not a space id, 'all' or 'active'")


def _dsn() -> str | None:
    from semantic.core.settings import WritePathSettings

    settings = WritePathSettings()
    return None if settings.database_url is None else settings.dsn()


async def _connect(dsn: str) -> Any:
    """A connection with pgvector's codec and asyncpg's default jsonb codec (JSON text)."""
    import asyncpg
    from pgvector.asyncpg import register_vector

    conn = await asyncpg.connect(dsn, timeout=30)
    await register_vector(conn)
    return conn


def _peak_rss_mib() -> float:
    """This process's peak resident memory. Linux: VmHWM of /proc/self/status, which starts
    afresh at exec (``ru_maxrss`` survives fork and exec, so a command started by a large
    process would report that process's peak). Elsewhere ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class _Bar:
    """tqdm on stderr counting rows, its description the file being read or written."""

    def __init__(self, label: str) -> None:
        self._bar = tqdm(desc=label, unit=" rows", file=sys.stderr, dynamic_ncols=True)
        self._file = ""

    async def __call__(self, file: str, rows: int) -> None:
        if file != self._file:
            self._file = file
            self._bar.set_postfix_str(file)
        self._bar.update(rows)

    def show(self, done: int, total: int) -> None:
        """Set the bar to ``done`` of ``total`` (the heal pass reports running totals)."""
        self._bar.total = total
        self._bar.n = done
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


async def run_export(
    args: argparse.Namespace,
    *,
    hook: Callable[[str, int], Awaitable[None]] | None = None,
    on_summary: Callable[[dict[str, Any]], None] | None = None,
) -> int:
    """Export; ``hook`` (tests) is awaited after each batch, after the progress bar;
    ``on_summary`` (the restore drill) receives the printed summary."""
    from semantic.core.snapshot import MANIFEST
    from semantic.store.postgres.snapshot import export_snapshot

    dsn = _dsn()
    if dsn is None:
        print("DATABASE_URL is not set", file=sys.stderr)
        return 2
    out = _target(args.out)
    if out is None:
        print(f"export failed: {args.out} exists; choose a new path", file=sys.stderr)
        return 1
    space: int | str = args.space if args.space in ("all", "active") else int(args.space)
    started = time.perf_counter()
    conn = await _connect(dsn)
    try:
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError:
        await conn.close()
        raise
    folder = work / (out.stem if out.suffix == ".tar" else out.name)
    bar = _Bar("export")

    async def progress(file: str, rows: int) -> None:
        await bar(file, rows)
        if hook is not None:
            await hook(file, rows)

    try:
        folder.mkdir()
        manifest = await export_snapshot(
            conn,
            folder,
            dsn=dsn,
            tenants=args.tenant,
            content_types=args.content_type,
            spaces=space,  # type: ignore[arg-type]
            batch_size=args.batch_size,
            progress=progress,
        )
        (folder / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
        if out.suffix == ".tar":
            packed = work / "snapshot.tar"
            with tarfile.open(packed, "w") as tar:
                tar.add(folder, arcname=folder.name)
            packed.replace(out)
        else:
            folder.replace(out)
    finally:
        bar.close()
        await conn.close()
        shutil.rmtree(work, ignore_errors=True)
    seconds = time.perf_counter() - started
    vectors = sum(s.vectors for s in manifest.spaces)
    summary = {
        "command": "export",
        "out": str(out),
        "files": {name: entry.rows for name, entry in sorted(manifest.files.items())},
        "seconds": round(seconds, 3),
        "vectors_per_s": round(vectors / seconds, 1) if seconds > 0 else 0.0,
        "peak_rss_mib": round(_peak_rss_mib(), 1),
    }
    _print_summary(summary, args.json)
    if on_summary is not None:
        on_summary(summary)
    return 0


def _target(out: Path) -> Path | None:
    """The absolute output path, None when something is there already."""
    resolved = out.resolve()
    return None if resolved.exists() else resolved


@contextmanager
def _unpacked(path: Path) -> Iterator[Path]:
    """The snapshot folder of ``path``: itself, or a .tar extracted into a temporary
    folder (safe extraction: no absolute paths, links or devices) removed afterwards."""
    from semantic.core.snapshot import MANIFEST, SnapshotInvalid

    if path.is_dir():
        yield path
        return
    if not path.is_file():
        raise SnapshotInvalid(f"{path} does not exist")
    with tempfile.TemporaryDirectory(prefix=".import.", dir=path.parent) as work:
        try:
            with tarfile.open(path, "r:*") as tar:
                tar.extractall(work, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise SnapshotInvalid(f"{path} is not a readable .tar ({exc})") from exc
        root = Path(work)
        entries = list(root.iterdir())
        if not (root / MANIFEST).exists() and len(entries) == 1 and entries[0].is_dir():
            root = entries[0]
        yield root


async def run_import(
    args: argparse.Namespace, *, on_summary: Callable[[dict[str, Any]], None] | None = None
) -> int:
    """Verify, load, heal when needed; print the summary (also given to ``on_summary``)."""
    from semantic.core.snapshot import (
        ImportReport,
        check_schema,
        map_spaces,
        replace_scope,
        verify_snapshot,
    )
    from semantic.store.postgres.snapshot import schema_version
    from semantic.store.postgres.snapshot_load import SnapshotLoader, database_spaces

    dsn = _dsn()
    if dsn is None:
        print("DATABASE_URL is not set", file=sys.stderr)
        return 2
    started = time.perf_counter()
    report = ImportReport(mode=args.mode)
    with _unpacked(args.path.resolve()) as folder:
        manifest = verify_snapshot(folder)
        conn = await _connect(dsn)
        bar = _Bar("import")
        try:
            check_schema(manifest.schema_version, await schema_version(conn))
            mapping, create = map_spaces(
                manifest.spaces, await database_spaces(conn), reembed=args.reembed
            )
            replace = False if args.mode == "merge" else replace_scope(manifest, args.tenant)
            loader = SnapshotLoader(
                conn, folder, manifest, tenants=args.tenant, batch_size=args.batch_size,
                progress=bar,
            )  # fmt: skip
            await loader.run(report, mapping, [s.id for s in create], replace)
            active = {s.id for s in await database_spaces(conn) if s.active}
            written = report.nodes["created"] + report.nodes["updated"]
            kept_in = {v for v in report.spaces.values() if v is not None}
            report.heal_needed = bool(written or args.reembed) and not (active & kept_in)
        finally:
            bar.close()
            await conn.close()
    summary: dict[str, Any] = {"command": "import", **report.as_dict()}
    code = 0
    if report.heal_needed:
        healed = await _heal()
        summary["heal"] = healed
        code = 0 if healed.get("failed", 1) == 0 else 1
    summary["seconds"] = round(time.perf_counter() - started, 3)
    summary["peak_rss_mib"] = round(_peak_rss_mib(), 1)
    _print_summary(summary, args.json)
    if on_summary is not None:
        on_summary(summary)
    return code


async def _heal() -> dict[str, Any]:
    """One heal pass of the active space (created for the embedder's default model when
    there is none), re-embedding the imported nodes that have no vectors there."""
    from semantic.common.embedder_client import EmbedderClient
    from semantic.common.errors import SemanticError
    from semantic.core.maintenance import Maintenance
    from semantic.core.settings import MaintenanceSettings, WritePathSettings
    from semantic.core.spaces import ActiveSpaces, NoActiveSpace
    from semantic.core.writer import writer_from_settings
    from semantic.store.postgres.db import create_pool, default_session_settings
    from semantic.store.postgres.maintenance import PostgresMaintenance
    from semantic.store.postgres.nodes import PostgresNodes
    from semantic.store.postgres.spaces import PostgresSpaces

    settings = WritePathSettings()
    pool = await create_pool(
        settings.dsn(), min_size=1, max_size=4, session_settings=default_session_settings()
    )
    embedder = EmbedderClient(settings.embedder_address)
    bar = _Bar("heal")
    try:
        model = await embedder.default_model(wait_s=10)
        registry = PostgresSpaces(pool, index_precision=settings.vector_index_precision)
        nodes = PostgresNodes(pool, text_config=settings.search_text_config)
        writer = writer_from_settings(settings, nodes, embedder, model.max_tokens)
        active = ActiveSpaces(registry)
        maintenance = Maintenance(
            PostgresMaintenance(pool),
            active,
            writer,
            batch_size=MaintenanceSettings().indexer_heal_batch_size,
        )
        try:
            space = await active.space(None)
        except NoActiveSpace:
            await registry.ensure(model_id=model.model_id, model_sha256=model.sha256, dim=model.dim)
            space = await active.space(None)

        def progress(report: Any, total: int) -> None:
            bar.show(report.scanned, total)

        done = await maintenance.heal(space, mode="heal", progress=progress)
        return {"space": space.id, **done.as_dict()}
    except SemanticError as exc:
        print(
            f"import: the nodes are in; re-embedding failed ({exc}): run `semantic heal`",
            file=sys.stderr,
        )
        return {"failed": -1, "error": str(exc)}
    finally:
        bar.close()
        await embedder.close()
        await pool.close()


def _print_summary(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary))
        return
    print(" ".join(f"{k}={json.dumps(v)}" for k, v in summary.items()))
