"""The Admin RPCs on the event pipeline: the dead letters (list, replay, discard) and
the pipeline's part of the health report (NATS reachable, the consumers' backlog, the
dead-letter count). NATS is optional for the search service: without it these RPCs are
UNAVAILABLE and the report says why, while everything else serves."""

from __future__ import annotations

import time

import structlog

from semantic.common.errors import DependencyUnavailable
from semantic.core.pipeline import DeadLetters, EventPipeline
from semantic.store.nats.connection import BackgroundConnection
from semantic.v1 import search_pb2 as pb
from semantic.wire import pipeline as wire

log = structlog.get_logger(__name__)


class PipelineAdmin:
    """Dead letters and the pipeline's health, on an optional NATS connection."""

    def __init__(self, connection: BackgroundConnection, pipeline: EventPipeline) -> None:
        self._connection = connection
        self._pipeline = pipeline
        self._letters = DeadLetters(pipeline)

    async def list(self, request: pb.ListDeadLettersRequest) -> pb.ListDeadLettersResponse:
        """ListDeadLetters."""
        limit, before_seq, reason = wire.list_request(request)
        return wire.page_to_proto(await self._letters.list(limit, before_seq, reason))

    async def replay(self, request: pb.ReplayDeadLettersRequest) -> pb.ReplayDeadLettersResponse:
        """ReplayDeadLetters."""
        seqs, reason = wire.selection(request)
        report = await self._letters.replay(seqs, reason)
        log.info(
            "dead_letters_replayed",
            replayed=report.replayed,
            failed=len(report.failures),
            all=seqs is None,
            reason=reason,
        )
        return wire.replay_to_proto(report)

    async def discard(self, request: pb.DiscardDeadLettersRequest) -> pb.DiscardDeadLettersResponse:
        """DiscardDeadLetters."""
        seqs, reason = wire.selection(request)
        discarded = await self._letters.discard(seqs, reason)
        log.info("dead_letters_discarded", discarded=discarded, all=seqs is None, reason=reason)
        return pb.DiscardDeadLettersResponse(discarded=discarded)

    async def report(self, response: pb.HealthReportResponse) -> None:
        """Add the ``nats`` component and the backlog to a health report (never raises):
        OK with the server, DOWN with the reason, UNSPECIFIED (not checked) when NATS is
        not configured."""
        started = time.perf_counter()
        connected, detail = self._connection.status()
        component = pb.ComponentHealth(name="nats", detail=detail)
        if not self._connection.configured:
            component.status = pb.COMPONENT_STATUS_UNSPECIFIED
        elif not connected:
            component.status = pb.COMPONENT_STATUS_DOWN
        else:
            try:
                state = await self._pipeline.state()
            except DependencyUnavailable as exc:
                component.status, component.detail = pb.COMPONENT_STATUS_DOWN, str(exc)
            except Exception as exc:  # reported, not raised: this is a health report
                component.status = pb.COMPONENT_STATUS_DOWN
                component.detail = f"{type(exc).__name__}: {exc}"
            else:
                component.status = pb.COMPONENT_STATUS_OK
                wire.lag_to_proto(state, response)
            component.latency_ms = (time.perf_counter() - started) * 1000
        response.components.append(component)
