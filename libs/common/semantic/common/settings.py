"""Typed, frozen settings read once from the environment (and an optional ``.env``)."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

LogFormat = Literal["json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]
EventLoop = Literal["uvloop", "asyncio"]


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{userinfo}:***@{netloc[1]}"))


class BaseServiceSettings(BaseSettings):
    """Settings every process shares. Services subclass it and add their own fields.

    Every field reads ``SEMANTIC_<NAME>``; the two connection strings also read the
    conventional ``DATABASE_URL`` and ``NATS_URL``.
    """

    model_config = SettingsConfigDict(
        env_prefix="SEMANTIC_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    log_level: LogLevel = Field("info", description="Minimum log level.")
    log_format: LogFormat = Field(
        "json", description="`json` (one object per line) or `console` (human readable)."
    )
    event_loop: EventLoop = Field(
        "uvloop",
        description="`uvloop` (libuv: less CPU per RPC and per statement) or `asyncio` (the "
        "standard library's loop).",
    )
    database_url: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("DATABASE_URL", "SEMANTIC_DATABASE_URL"),
        description="PostgreSQL DSN (pgvector >= 0.8), e.g. postgresql://user:pw@host:5432/db.",
    )
    nats_url: str | None = Field(
        None,
        validation_alias=AliasChoices("NATS_URL", "SEMANTIC_NATS_URL"),
        description="NATS server URL(s) with JetStream, comma separated.",
    )
    grpc_host: str = Field("0.0.0.0", description="Address the gRPC server binds.")
    grpc_port: int = Field(50051, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    metrics_host: str = Field("0.0.0.0", description="Address of the Prometheus endpoint.")
    metrics_port: int = Field(
        9090, ge=0, le=65535, description="Prometheus /metrics port (0 disables it)."
    )
    shutdown_grace_seconds: float = Field(
        10.0, gt=0, description="Time in-flight RPCs get to finish after SIGTERM."
    )
    startup_timeout_seconds: float = Field(
        120.0, gt=0, description="How long start-up retries dependencies before giving up."
    )

    def dsn(self) -> str:
        """The database DSN; raises if it is not configured."""
        if self.database_url is None:
            raise ValueError("DATABASE_URL is not set")
        return self.database_url.get_secret_value()

    def redacted(self) -> dict[str, Any]:
        """Settings as a dict safe to log: secrets masked, passwords stripped from URLs."""
        out: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                raw = value.get_secret_value()
                out[name] = redact_url(raw) if "://" in raw else "***"
            elif isinstance(value, str) and "://" in value:
                out[name] = redact_url(value)
            else:
                out[name] = value
        return out
