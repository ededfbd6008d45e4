"""`semantic import-from FORMAT PATH` and `semantic export-to FORMAT --out PATH`.

import-from reads another vector store's files (FAISS, Annoy, Chroma, Qdrant, JSONL,
Parquet) or a pgvector table of another PostgreSQL database (Supabase included), and writes
the records through the search service's Upsert at SEMANTIC_SEARCH_ADDRESS (or --search),
with the token in SEMANTIC_TOKEN (or --token). export-to reads DATABASE_URL and writes
FAISS, JSONL or a Chroma directory. The libraries come with the `migrate` extra
(`pip install 'semantic[migrate]'`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from semantic.tools.foreign.formats import EXPORT_FORMATS, FORMATS


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register import-from and export-to."""
    into = sub.add_parser(
        "import-from",
        help="load the records of another vector store (FAISS, Annoy, Chroma, Qdrant, ...)",
        description="Read FORMAT at PATH and upsert every record as a node through the "
        "search service. A record's vector is kept (as the node's client-supplied `content` "
        "vector) when --keep-vectors is on and its dimension equals the active space's; "
        "otherwise its text is embedded by the service. --keep-vectors defaults to on only "
        "when --model equals the active space's model id.",
    )
    into.add_argument("format", choices=("auto", *FORMATS), help="the source's format")
    into.add_argument(
        "path", nargs="?", type=Path, help="file or directory (Qdrant: or --url; pgvector: none)"
    )
    into.add_argument("--collection", help="Chroma / Qdrant collection (default: the only one)")
    into.add_argument("--vector-name", help="Qdrant named vector to read")
    into.add_argument("--url", help="Qdrant server URL instead of a local directory")
    into.add_argument("--text-key", default="text", help="Qdrant payload key of the text")
    into.add_argument(
        "--source-dsn",
        help="pgvector: the database to read (postgresql://…; default $SOURCE_DATABASE_URL)",
    )
    into.add_argument("--table", help="pgvector: table to read, [schema.]name")
    into.add_argument("--query", help="pgvector: a SELECT returning id, vector, text, ...")
    for field, default in (
        ("id", "id"),
        ("vector", "embedding"),
        ("text", "content"),
        ("metadata", "metadata"),
        ("title", "none"),
        ("content-type", "none"),
    ):
        into.add_argument(
            f"--{field}-column",
            help=f"pgvector --table: the {field} column (default {default}; '' for none)",
        )
    into.add_argument("--tenant", default="", help="tenant of the nodes (default: the default)")
    into.add_argument("--id-prefix", default="", help="put in front of every record id")
    into.add_argument(
        "--content-type-key",
        default="content_type",
        help="metadata key holding a record's content type (default content_type)",
    )
    into.add_argument(
        "--content-type", default="document", help="content type otherwise (default document)"
    )
    into.add_argument("--model", help="model id the source's vectors were made with")
    keep = into.add_mutually_exclusive_group()
    keep.add_argument(
        "--keep-vectors",
        dest="keep_vectors",
        action="store_true",
        default=None,
        help="store the records' vectors as they are (when their dimension fits)",
    )
    keep.add_argument(
        "--no-keep-vectors",
        dest="keep_vectors",
        action="store_false",
        help="always embed the records' texts",
    )
    into.add_argument("--version", type=int, default=1, help="version of every node (default 1)")
    into.add_argument("--batch-size", type=int, default=100, help="nodes per Upsert")
    into.add_argument("--search", help="search service address (default $SEMANTIC_SEARCH_ADDRESS)")
    into.add_argument("--token", help="bearer token (default $SEMANTIC_TOKEN)")
    into.add_argument("--json", action="store_true", help="print the summary as JSON")

    out = sub.add_parser(
        "export-to",
        help="write the nodes and their vectors as FAISS, JSONL or a Chroma directory",
        description="Read the nodes of a tenant and their `content` vectors in the active "
        "space (the mean of the node's chunks, L2-normalised) from DATABASE_URL and write "
        "them in FORMAT.",
    )
    out.add_argument("format", choices=EXPORT_FORMATS, help="what to write")
    out.add_argument("--out", required=True, type=Path, help="directory (jsonl: file) to write")
    out.add_argument("--tenant", default="", help="tenant to export (default: the default)")
    out.add_argument("--content-type", help="only nodes of this content type")
    out.add_argument("--collection", default="semantic", help="Chroma collection name")
    out.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    """Run import-from or export-to; exit code 1 when a record failed or the call did."""
    from semantic.common.errors import SemanticError

    try:
        if args.command == "import-from":
            return asyncio.run(_import(args))
        return asyncio.run(_export(args))
    except SemanticError as exc:
        print(f"{args.command} failed: {exc}", file=sys.stderr)
        return 1


async def _import(args: argparse.Namespace) -> int:
    import grpc

    from semantic.tools.foreign.formats import open_source
    from semantic.tools.foreign.load import LoadOptions, load
    from semantic.tools.foreign.records import MappingOptions, ReadOptions

    source = open_source(
        args.format,
        args.path,
        ReadOptions(
            collection=args.collection,
            vector_name=args.vector_name,
            url=args.url,
            text_key=args.text_key,
            source_dsn=args.source_dsn or os.environ.get("SOURCE_DATABASE_URL"),
            table=args.table,
            query=args.query,
            columns={
                field: value
                for field in ("id", "vector", "text", "metadata", "title", "content_type")
                if (value := getattr(args, f"{field}_column")) is not None
            },
        ),
    )
    options = LoadOptions(
        tenant=args.tenant,
        version=args.version,
        keep_vectors=args.keep_vectors,
        model=args.model,
        batch_size=args.batch_size,
        mapping=MappingOptions(
            id_prefix=args.id_prefix,
            content_type_key=args.content_type_key,
            default_content_type=args.content_type,
        ),
    )
    address = args.search or os.environ.get("SEMANTIC_SEARCH_ADDRESS", "127.0.0.1:50052")
    token = args.token or os.environ.get("SEMANTIC_TOKEN", "")
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            summary = await load(
                channel, source.records, options, total=source.total, metadata=metadata
            )
        except grpc.aio.AioRpcError as exc:
            print(f"import-from failed: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    result = {"format": source.format, **summary.as_dict()}
    _print(result, args.json, _import_line)
    return 1 if summary.failed else 0


async def _export(args: argparse.Namespace) -> int:
    from semantic.tools.foreign.export import export

    dsn = os.environ.get("DATABASE_URL")
    if not dsn:
        print("export-to needs DATABASE_URL", file=sys.stderr)
        return 1
    import asyncpg

    try:
        summary = await export(
            dsn,
            args.format,
            args.out,
            tenant=args.tenant,
            content_type=args.content_type,
            collection=args.collection,
        )
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"export-to failed: the database: {exc}", file=sys.stderr)
        return 1
    _print(summary.as_dict(), args.json, _export_line)
    return 0


def _import_line(result: dict[str, Any]) -> str:
    lines = [
        f"{result['records']} records from {result['format']}: {result['kept_vectors']} kept "
        f"their vectors, {result['embedded']} embedded, {result['failed']} failed "
        f"(space {result['space']['id']}, {result['space']['model_id']})"
    ]
    lines += [f"  {f['record']}: {f['error']}" for f in result["failures"]]
    return "\n".join(lines)


def _export_line(result: dict[str, Any]) -> str:
    return (
        f"wrote {result['written']} of {result['nodes']} nodes to {result['out']} "
        f"({result['format']}; {result['skipped_without_vector']} without a vector skipped)"
    )


def _print(result: dict[str, Any], as_json: bool, line: Any) -> None:
    print(json.dumps(result, indent=2) if as_json else line(result))
