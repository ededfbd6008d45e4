"""A throw-away local stack for `semantic eval` and `semantic bench`: an embedded
PostgreSQL in a temporary folder plus the embedder and search services as processes
(and, when asked, NATS JetStream and the indexer)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import structlog

from semantic.tools.devstack.nats import EmbeddedNats
from semantic.tools.devstack.ports import free_port
from semantic.tools.devstack.postgres import EmbeddedPostgres
from semantic.tools.devstack.service import ServiceProcess

log = structlog.get_logger(__name__)


class LocalStack:
    """PostgreSQL + embedder + search on free loopback ports; everything removed on exit."""

    def __init__(
        self,
        model_dirs: Sequence[Path],
        *,
        threads: int = 2,
        search_env: Mapping[str, str] | None = None,
        embedder_env: Mapping[str, str] | None = None,
        database_url: str | None = None,
        indexer_env: Mapping[str, str] | None = None,
    ) -> None:
        """``indexer_env`` (even empty) also starts NATS and the indexer."""
        self._model_dirs = [Path(p).resolve() for p in model_dirs]
        self._threads = threads
        self._search_env = dict(search_env or {})
        self._embedder_env = dict(embedder_env or {})
        self._external_db = database_url
        self._indexer_env = None if indexer_env is None else dict(indexer_env)
        self._closers = contextlib.ExitStack()
        self._postgres: EmbeddedPostgres | None = None
        self._nats: EmbeddedNats | None = None
        self.nats_url = ""
        self.indexer_address = ""
        self._pids: dict[str, int] = {}
        self.database_url = database_url or ""
        self.embedder_address = ""
        self.search_address = ""
        self.http_url = ""
        """The search service's HTTP API and console, e.g. http://127.0.0.1:41234."""

    def __enter__(self) -> LocalStack:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _start(self) -> None:
        tmp = Path(tempfile.mkdtemp(prefix="semantic-stack-"))
        self._closers.callback(shutil.rmtree, tmp, ignore_errors=True)
        if self._external_db is None:
            self._postgres = EmbeddedPostgres(
                tmp / "postgres",
                free_port(),
                settings={"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"},
            )
            self._closers.callback(self._postgres.stop)
            self._postgres.start()
            self.database_url = self._postgres.url("semantic")
        base = {**os.environ, "SEMANTIC_METRICS_PORT": "0", "SEMANTIC_LOG_LEVEL": "warning"}
        base.pop("DATABASE_URL", None)
        base.pop("NATS_URL", None)
        base.pop("SEMANTIC_NATS_URL", None)
        nats_env: dict[str, str] = {}
        if self._indexer_env is not None:  # NATS first: search reports its pipeline too
            self._nats = EmbeddedNats(tmp / "nats", free_port())
            self._closers.callback(self._nats.stop)
            self._nats.start()
            self.nats_url = self._nats.url
            nats_env["NATS_URL"] = self.nats_url
        self.embedder_address = self._spawn(
            "semantic.embedder",
            {
                **base,
                "SEMANTIC_EMBEDDER_MODEL_DIRS": ",".join(str(p) for p in self._model_dirs),
                "SEMANTIC_EMBEDDER_INTRA_OP_THREADS": str(self._threads),
                "SEMANTIC_EMBEDDER_MAX_PENDING": "100000",
                **self._embedder_env,
            },
        )
        http_port = free_port()
        self.http_url = f"http://127.0.0.1:{http_port}"
        self.search_address = self._spawn(
            "semantic.search",
            {
                **base,
                "SEMANTIC_HTTP_PORT": str(http_port),
                "DATABASE_URL": self.database_url,
                "SEMANTIC_EMBEDDER_ADDRESS": self.embedder_address,
                "SEMANTIC_AUTH_MODE": "disabled",
                "SEMANTIC_SEARCH_TOKENIZER": str(self._model_dirs[0] / "tokenizer.json"),
                **nats_env,
                **self._search_env,
            },
        )
        if self._indexer_env is not None:
            self.indexer_address = self._spawn(
                "semantic.indexer",
                {
                    **base,
                    "DATABASE_URL": self.database_url,
                    "NATS_URL": self.nats_url,
                    "SEMANTIC_EMBEDDER_ADDRESS": self.embedder_address,
                    "SEMANTIC_SEARCH_TOKENIZER": str(self._model_dirs[0] / "tokenizer.json"),
                    **self._search_env,
                    **self._indexer_env,
                },
            )

    def _spawn(self, module: str, env: dict[str, str]) -> str:
        service = ServiceProcess.spawn(module, env, base_env={})
        self._closers.callback(service.stop, 30.0)
        self._pids[module.rsplit(".", 1)[-1]] = service.pid
        asyncio.run(service.wait_serving())
        log.info("stack_service_ready", service=module, address=service.address)
        return service.address

    def pids(self) -> dict[str, int]:
        """The running processes by name (embedder, search, indexer, postgres, nats)."""
        pids = dict(self._pids)
        if self._postgres is not None and self._postgres.pid is not None:
            pids["postgres"] = self._postgres.pid
        if self._nats is not None and self._nats.pid is not None:
            pids["nats"] = self._nats.pid
        return pids

    def close(self) -> None:
        """Stop the services, NATS and PostgreSQL, and remove the temporary folder."""
        self._closers.close()
        self._pids.clear()
        self._nats = self._postgres = None
