"""The least a Python search service can do for a dense ``Search``: the bench's reference
for what the product's own layers cost (``semantic bench search``, ``minimal_service``).

Run as ``python -m semantic.tools.bench.minimal_search``. It answers ``Search`` with a
query vector (``vector.packed``) in the tenant's ``content`` vectors, without a filter,
and ``grpc.health.v1`` Check; nothing else. Per query it does only what no dense search
service in Python can skip: parse the request, send the product's own index-scan
statement (``dense_statements.index_scan_text``, the node rows in the same statement) on
a connection taken from a plain queue, and write every hit's node into the reply
(``wire.convert.fill_node``), on uvloop and grpc.aio as the product. Not there: the
product's validation, authentication and error interceptors, its core and store layers,
asyncpg's pool, the settings read-back checks' fallbacks, metrics. Bench tooling only,
never part of a deployment.

Settings, from the environment: ``DATABASE_URL``, ``SEMANTIC_GRPC_HOST`` /
``SEMANTIC_GRPC_PORT`` (where it serves), ``SEMANTIC_SEARCH_EF_SEARCH`` (the session's
``hnsw.ef_search``, as the product's pool starts it), ``SEMANTIC_MINIMAL_CONNECTIONS``
(connections opened at start, 12).
"""

from __future__ import annotations

import asyncio
import math
import os
from typing import Any

import asyncpg
import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from semantic.common import runtime
from semantic.core.domain import DEFAULT_VECTOR, Filter
from semantic.store.postgres import spaces
from semantic.store.postgres.db import DEFAULT_MAX_SCAN_TUPLES, init_connection, session_settings
from semantic.store.postgres.dense import FETCH_MARGIN
from semantic.store.postgres.dense_statements import index_scan_text
from semantic.store.postgres.filters import compile_filter
from semantic.store.postgres.node_rows import node_from_row
from semantic.v1 import search_pb2 as pb
from semantic.wire import convert


class MinimalSearch:
    """``Search`` over a fixed set of connections (see the module doc)."""

    def __init__(self, connections: asyncio.Queue[asyncpg.Connection], table: str, ef: int):
        self._connections = connections
        self._table = table
        self._ef = ef

    async def search(self, request: pb.SearchRequest, context: Any) -> pb.SearchResponse:
        q = np.frombuffer(request.vector.packed, dtype="<f4")
        limit = request.top_k or 10
        text, names = index_scan_text(
            self._table,
            compile_filter(request.tenant, Filter(), start=1)[0],
            filtered=False,
            filter_params=0,
            gated=False,
            halfvec_dim=None,
        )
        values = {
            "q": q,
            "tenant": request.tenant,
            "name": DEFAULT_VECTOR,
            # One chunk per node (the bench's data): the product's first fetch for it.
            "fetch": max(math.ceil(limit * FETCH_MARGIN), limit + 16),
            "limit": limit,
            "ef": self._ef,
            "max_scan": DEFAULT_MAX_SCAN_TUPLES,
            "attach": 0,
        }
        conn = self._connections.get_nowait()
        try:
            rows = await conn.fetch(text, *(values[name] for name in names))
        finally:
            self._connections.put_nowait(conn)
        response = pb.SearchResponse()
        for row in rows:
            if row["node_id"] is None:
                continue
            similarity = 1.0 - float(row["distance"])
            hit = response.hits.add(score=similarity)
            convert.fill_node(hit.node, node_from_row(row), include_body=False)
            hit.chunk.vector_name = DEFAULT_VECTOR
            hit.chunk.chunk_index = row["chunk"]
            hit.chunk.similarity = similarity
        return response


async def serve() -> None:
    """Open the connections, serve until the process is stopped."""
    ef = int(os.environ.get("SEMANTIC_SEARCH_EF_SEARCH", "200"))
    settings = session_settings(ef)
    connections: asyncio.Queue[asyncpg.Connection] = asyncio.Queue()
    for _ in range(int(os.environ.get("SEMANTIC_MINIMAL_CONNECTIONS", "12"))):
        conn = await asyncpg.connect(os.environ["DATABASE_URL"], server_settings=settings)
        await init_connection(conn)
        connections.put_nowait(conn)
    table = (await spaces.active_space(conn)).table
    server = grpc.aio.server()
    minimal = MinimalSearch(connections, table, int(settings["hnsw.ef_search"]))
    search = grpc.unary_unary_rpc_method_handler(
        minimal.search,
        request_deserializer=pb.SearchRequest.FromString,
        response_serializer=pb.SearchResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("semantic.v1.Search", {"Search": search}),)
    )
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    host = os.environ.get("SEMANTIC_GRPC_HOST", "127.0.0.1")
    server.add_insecure_port(f"{host}:{os.environ['SEMANTIC_GRPC_PORT']}")
    await server.start()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    await server.wait_for_termination()


if __name__ == "__main__":
    runtime.run(serve(), "uvloop")
