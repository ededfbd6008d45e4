"""`python -m semantic.store.postgres migrate`: apply the schema migrations to DATABASE_URL
and exit (the runtime image's migration job; `semantic migrate` runs the same function)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import structlog

from semantic.common.errors import BootstrapError
from semantic.common.log import configure_logging
from semantic.common.settings import BaseServiceSettings
from semantic.store.postgres.schema import bootstrap_schema

log = structlog.get_logger("semantic.store.postgres")  # the same name under `python -m`


async def migrate() -> int:
    """Bring DATABASE_URL's schema up to date; exit code 0 on success, 1 otherwise."""
    settings = BaseServiceSettings()
    configure_logging(settings.log_level, settings.log_format)
    if settings.database_url is None:
        log.error("migrate_failed", reason="DATABASE_URL is not set")
        return 1
    try:
        result = await bootstrap_schema(settings.dsn(), timeout_s=settings.startup_timeout_seconds)
    except BootstrapError as exc:
        log.error("migrate_failed", reason=str(exc))
        return 1
    log.info("schema_up_to_date", applied=len(result.applied), present=result.already_applied)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the one command, run it, return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m semantic.store.postgres")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("migrate", help="apply pending migrations under an advisory lock")
    parser.parse_args(argv)
    return asyncio.run(migrate())


if __name__ == "__main__":
    sys.exit(main())
