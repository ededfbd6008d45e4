"""Structured logging: one configuration for every process (structlog over stdlib)."""

from __future__ import annotations

import logging
import sys

import structlog

from semantic.common.settings import BaseServiceSettings, LogFormat, LogLevel

_DEFAULTS = BaseServiceSettings.model_fields


def configure_logging(
    level: LogLevel = _DEFAULTS["log_level"].default,
    fmt: LogFormat = _DEFAULTS["log_format"].default,
) -> None:
    """Route structlog and stdlib logging to stderr as JSON lines or console text."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        # Plain tracebacks: the rich one prints every frame's local variables (a DSN with
        # its password, a token) and takes a second to render, on the event loop.
        else structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    )
    if fmt == "json":
        shared.append(structlog.processors.format_exc_info)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processor=renderer)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("asyncio", "grpc"):
        logging.getLogger(noisy).setLevel(max(root.level, logging.WARNING))
