"""A dependency's availability published as the gRPC health of a server kit.

The database guardian (``semantic.store.postgres.guardian``) says whether the database
serves; the report made here turns that into SERVING / NOT_SERVING for the server and each
of its services, so load balancers and ``semantic dev`` stop sending work meanwhile.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from semantic.common.server import ServerKit

Report = Callable[[bool], Awaitable[None]]
"""Publishes whether the service serves."""


def health_reporter(kit: ServerKit) -> Report:
    """Sets every service of ``kit`` (and the server, name "") SERVING or NOT_SERVING."""
    return kit.report
