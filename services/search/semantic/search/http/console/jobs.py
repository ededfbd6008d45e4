"""Console actions that take a while (heal, reindex, rollback, dead-letter replay) run as
background jobs of the process; the page polls ``/admin/vector-search/jobs/<id>`` for them.

A job runs the same servicer call an API client would make, as the admin who started it. At
most :data:`MAX_JOBS` are remembered (the oldest finished ones are forgotten first).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from google.protobuf.message import Message

from semantic.common.errors import Overloaded, SemanticError
from semantic.wire import protojson

log = structlog.get_logger(__name__)

MAX_JOBS = 50
MAX_RUNNING = 4


@dataclass
class Job:
    """One action: what it is, its state and its result (protobuf-JSON) or error."""

    id: str
    action: str
    started: float = field(default_factory=time.time)
    finished: float | None = None
    state: str = "running"
    result: dict[str, Any] | None = None
    error: str | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def view(self) -> dict[str, Any]:
        """The job as JSON for the page."""
        return {
            "id": self.id,
            "action": self.action,
            "state": self.state,
            "started": self.started,
            "finished": self.finished,
            "seconds": round((self.finished or time.time()) - self.started, 1),
            "result": self.result,
            "error": self.error,
        }


class Jobs:
    """The console's background actions."""

    def __init__(self) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()

    def start(self, action: str, run: Callable[[], Awaitable[Message]]) -> Job:
        """Run ``run`` in the background; Overloaded when too many are running."""
        if sum(1 for j in self._jobs.values() if j.state == "running") >= MAX_RUNNING:
            raise Overloaded("console jobs")
        job = Job(uuid.uuid4().hex[:12], action)
        job.task = asyncio.create_task(self._run(job, run), name=f"console-{action}")
        self._jobs[job.id] = job
        self._forget()
        return job

    def get(self, job_id: str) -> Job | None:
        """The job, if remembered."""
        return self._jobs.get(job_id)

    def recent(self) -> list[Job]:
        """Every remembered job, newest first."""
        return list(reversed(self._jobs.values()))

    async def close(self) -> None:
        """Cancel running jobs (their work resumes elsewhere: heal and builds are resumable)."""
        tasks = [j.task for j in self._jobs.values() if j.task is not None and not j.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, job: Job, run: Callable[[], Awaitable[Message]]) -> None:
        try:
            job.result = protojson.to_dict(await run())
            job.state = "done"
        except SemanticError as exc:
            job.state, job.error = "failed", str(exc)
        except Exception as exc:  # a bug: logged with its trace, shown without it
            log.error("console_job_failed", action=job.action, exc_info=exc)
            job.state, job.error = "failed", f"internal error ({type(exc).__name__})"
        finally:
            job.finished = time.time()

    def _forget(self) -> None:
        while len(self._jobs) > MAX_JOBS:
            oldest = next((k for k, j in self._jobs.items() if j.state != "running"), None)
            if oldest is None:
                return
            del self._jobs[oldest]
