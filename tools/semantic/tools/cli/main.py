"""The `semantic` command: one entry point, one subcommand per task."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="semantic",
        description="Semantic search, similarity and recommendation engine.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = sub.add_parser(
        "dev",
        help="run the whole stack on this machine (embedded PostgreSQL+pgvector and NATS)",
        description=(
            "Start PostgreSQL+pgvector and NATS JetStream from wheels (unless DATABASE_URL / "
            "NATS_URL are set), apply the schema, start every service, print the endpoints. "
            "Ctrl-C stops everything; the next run reuses the data folder."
        ),
    )
    dev.add_argument("--data-dir", help="data folder (default $SEMANTIC_DATA_DIR or ./.semantic)")

    sub.add_parser(
        "migrate",
        help="apply the schema migrations to DATABASE_URL and exit",
        description="Apply pending migrations under an advisory lock; safe to run concurrently.",
    )
    sub.add_parser("version", help="print the version")
    openapi = sub.add_parser(
        "openapi",
        help="write the HTTP API's OpenAPI document (openapi.json), or check it is current",
    )
    openapi.add_argument("--out", default="openapi.json", help="file to write or check")
    openapi.add_argument(
        "--check", action="store_true", help="fail when the file differs from the code"
    )

    from semantic.common.auth import add_token_arguments
    from semantic.tools.cli import bench, eval_recommend, evaluate, maintain, model, snapshot

    maintain.add_parsers(sub)
    snapshot.add_parsers(sub)
    bench.add_parser(sub)
    evaluate.add_parser(sub)
    eval_recommend.add_parser(sub)
    model.add_parser(sub)
    # Moving in from and out to other vector stores.
    from semantic.tools.cli import foreign

    foreign.add_parsers(sub)
    # Operational drills on a throw-away stack (restore).
    from semantic.tools.cli import drill

    drill.add_parser(sub)
    add_token_arguments(
        sub.add_parser(
            "token",
            help="mint a JWT for a client (HS256 secret or RS256/ES256 private key)",
            description="Print a signed token with the given subject, roles and tenant.",
        )
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run one subcommand; returns the process exit code."""
    args = _build_parser().parse_args(argv)
    # Logs go to stderr so that `--json` output on stdout stays machine-readable.
    from semantic.common.log import configure_logging

    configure_logging("info", "console")
    if args.command == "version":
        from importlib.metadata import version

        print(version("semantic"))
        return 0
    if args.command == "migrate":
        # The runtime image's migration entry point, python -m semantic.store.postgres migrate.
        from semantic.store.postgres.__main__ import migrate

        return asyncio.run(migrate())
    if args.command == "openapi":
        return _openapi(args.out, check=args.check)
    if args.command == "model":
        from semantic.tools.cli import model

        return model.run(args)
    if args.command == "eval":
        from semantic.tools.cli import evaluate

        return evaluate.run(args)
    if args.command == "eval-recommend":
        from semantic.tools.cli import eval_recommend

        return eval_recommend.run(args)
    if args.command == "bench":
        from semantic.tools.cli import bench, evaluate, model

        return bench.run(args)
    if args.command in (
        "backfill",
        "heal",
        "reindex",
        "rollback",
        "activate",
        "spaces",
        "archetypes",
    ):
        from semantic.tools.cli import maintain

        return maintain.run(args)
    if args.command in ("import-from", "export-to"):
        from semantic.tools.cli import foreign

        return foreign.run(args)
    if args.command in ("export", "import"):
        from semantic.tools.cli import snapshot

        return snapshot.run(args)
    if args.command == "drill":
        from semantic.tools.cli import drill

        return drill.run(args)
    if args.command == "token":
        from semantic.common.auth import token_command

        return token_command(args)
    if args.command == "dev":
        from semantic.tools.cli.dev import run_dev

        return asyncio.run(run_dev(data_dir=args.data_dir))
    raise AssertionError(f"unhandled command {args.command}")  # argparse rejects others


def _openapi(out: str, *, check: bool) -> int:
    from pathlib import Path

    from semantic.search.app import openapi_document as document
    from semantic.search.http.openapi import render

    text = render(document())
    path = Path(out)
    if not check:
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
        return 0
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        print(f"{path} is current")
        return 0
    print(
        f"{path} is stale: run `make openapi` (or `semantic openapi`) and commit", file=sys.stderr
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
