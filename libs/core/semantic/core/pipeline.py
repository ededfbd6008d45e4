"""The event pipeline as operations see it: the indexer's consumer backlog and the dead
letters (events the indexer could not apply), listed, replayed or discarded.

The broker is behind :class:`EventPipeline` (a JetStream adapter lives in
:mod:`semantic.store.nats`); :class:`DeadLetters` holds the rules: explicit sequences
must all exist before anything is done, a replay republishes on the original subject with
a fresh message id (``replay:<seq>:<uuid>``, so the broker's duplicate window never drops
it) and only then deletes the letter, and "all" means the letters present when the call
started (a replay that dead-letters again does not loop).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from semantic.common.errors import NotFound

DEFAULT_LIST_LIMIT = 50
"""Letters a listing returns when it asks for none."""
MAX_LIST_LIMIT = 500
"""Most letters one listing returns."""
MAX_SEQS = 1000
"""Most sequences one replay or discard may name."""


@dataclass(frozen=True)
class ConsumerBacklog:
    """What the broker says of one durable consumer."""

    name: str
    pending: int  # in the stream, not yet delivered
    ack_pending: int  # delivered, not yet acknowledged
    redelivered: int  # redelivered at least once, still unacknowledged


@dataclass(frozen=True)
class PipelineState:
    """The consumers' backlog and the number of dead letters."""

    consumers: list[ConsumerBacklog]
    dead_letters: int
    server: str  # broker name and version, for display


DEAD_LETTER_REASONS = ("decode_error", "invalid", "too_large", "tenant_mismatch", "max_deliver")
"""Why the indexer dead-letters an event (the ``Semantic-Dlq-Reason`` header): a closed set."""


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter: the original payload and the headers the indexer added."""

    seq: int
    time: datetime
    subject: str  # on the dead-letter stream
    original_subject: str
    reason: str
    detail: str
    deliveries: int
    content_type: str
    payload: bytes


@dataclass(frozen=True)
class DeadLetterPage:
    """Letters newest first, and how many the stream holds in all."""

    letters: list[DeadLetter]
    total: int


@dataclass
class ReplayReport:
    """What a replay did: letters republished (and deleted) and per-sequence failures."""

    replayed: int = 0
    failures: dict[int, str] = field(default_factory=dict)


class EventPipeline(Protocol):
    """The broker's side of the pipeline. Every method raises DependencyUnavailable when
    the broker is not configured or unreachable."""

    async def state(self) -> PipelineState:
        """The consumers' backlog and the dead-letter count."""
        ...

    async def newest(self, limit: int, before_seq: int, reason: str) -> DeadLetterPage:
        """At most ``limit`` letters with a sequence below ``before_seq`` (0: any), newest
        first, only of ``reason`` when it is not empty."""
        ...

    def oldest(self, reason: str) -> AsyncIterator[DeadLetter]:
        """Every letter present now (of ``reason`` when not empty), oldest first."""
        ...

    async def letter(self, seq: int) -> DeadLetter | None:
        """The letter of sequence ``seq``, None when there is none."""
        ...

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        """Publish on the event stream (acknowledged by the broker)."""
        ...

    async def delete(self, seq: int) -> bool:
        """Delete a letter; False when it was already gone."""
        ...


class DeadLetters:
    """List, replay and discard dead letters (the Admin RPCs' use case)."""

    def __init__(self, pipeline: EventPipeline) -> None:
        self._pipeline = pipeline

    async def list(self, limit: int, before_seq: int, reason: str) -> DeadLetterPage:
        """Newest first; ``limit`` 0 means :data:`DEFAULT_LIST_LIMIT`."""
        return await self._pipeline.newest(limit or DEFAULT_LIST_LIMIT, before_seq, reason)

    async def replay(self, seqs: Sequence[int] | None, reason: str = "") -> ReplayReport:
        """Republish each letter (``seqs``, or all when None) on its original subject with
        its content type and a fresh message id, then delete it. A letter that cannot be
        republished stays and is reported; NotFound (nothing done) when a named sequence
        does not exist."""
        report = ReplayReport()
        async for letter in self._letters(seqs, reason):
            headers = {"Nats-Msg-Id": f"replay:{letter.seq}:{uuid.uuid4()}"}
            if letter.content_type:
                headers["Content-Type"] = letter.content_type
            try:
                await self._pipeline.publish(letter.original_subject, letter.payload, headers)
            except Exception as exc:  # reported per letter; the letter stays
                report.failures[letter.seq] = f"{type(exc).__name__}: {exc}"
                continue
            await self._pipeline.delete(letter.seq)
            report.replayed += 1
        return report

    async def discard(self, seqs: Sequence[int] | None, reason: str = "") -> int:
        """Delete the letters (``seqs``, or all when None); returns how many were deleted.
        NotFound (nothing done) when a named sequence does not exist."""
        deleted = 0
        async for letter in self._letters(seqs, reason):
            deleted += await self._pipeline.delete(letter.seq)
        return deleted

    async def _letters(self, seqs: Sequence[int] | None, reason: str) -> AsyncIterator[DeadLetter]:
        if seqs is None:
            async for letter in self._pipeline.oldest(reason):
                yield letter
            return
        found = []
        for index, seq in enumerate(seqs):
            named = await self._pipeline.letter(seq)
            if named is None:
                raise NotFound("dead letter", f"seqs[{index}] = {seq}")
            found.append(named)
        for each in found:
            yield each
