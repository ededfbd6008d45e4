"""`semantic migrate`: apply the schema to DATABASE_URL (for an init job or a manual run)."""

from __future__ import annotations

import structlog

from semantic.common.errors import BootstrapError
from semantic.common.log import configure_logging
from semantic.common.schema import bootstrap_schema
from semantic.common.settings import BaseServiceSettings

log = structlog.get_logger(__name__)


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
    print(f"schema up to date: {len(result.applied)} applied, {result.already_applied} present")
    return 0
