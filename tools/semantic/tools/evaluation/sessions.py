"""User sessions for recommendation evaluation, built from a BEIR dataset's qrels (issue 6).

Each query of the loaded split stands for one user whose journey is the query's relevant
documents (grade > 0, present in the corpus). The journey is put in a shuffled order that
depends only on the seed, the query id and the document id (a keyed hash, not Python's or
numpy's generator, so the order is the same on every platform and version and does not change
when other queries are added). All documents but the last form the history, fed to the
recommender as events in that order; the last is held out and is the one to predict.

Queries with fewer than 2 relevant documents are skipped: they would leave an empty history
(nothing to recommend from) or nothing to hold out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from semantic.tools.evaluation.beir import BeirDataset

MIN_JOURNEY = 2
"""Fewest relevant documents a query needs to become a session: one of history, one held out."""


@dataclass(frozen=True, slots=True)
class Session:
    """One simulated user: documents touched in order (``history``), and the next one to predict."""

    user_id: str
    history: tuple[str, ...]
    held_out: str


def build_sessions(
    dataset: BeirDataset, seed: int, *, max_history: int | None = None
) -> list[Session]:
    """One session per query of ``dataset.qrels`` with 2 or more relevant documents, qrels order.

    ``user_id`` is the query id. ``max_history``, if given, keeps only the most recent documents
    of each history (those just before the held-out one).
    """
    if max_history is not None and max_history < 1:
        raise ValueError(f"max_history must be at least 1, got {max_history}")
    sessions: list[Session] = []
    for query_id, judgements in dataset.qrels.items():
        relevant = [
            doc_id for doc_id, grade in judgements.items() if grade > 0 and doc_id in dataset.corpus
        ]
        if len(relevant) < MIN_JOURNEY:
            continue
        journey = sorted(relevant, key=lambda doc_id: _shuffle_key(seed, query_id, doc_id))
        history = journey[:-1]
        if max_history is not None:
            history = history[-max_history:]
        sessions.append(Session(user_id=query_id, history=tuple(history), held_out=journey[-1]))
    return sessions


def session_qrels(sessions: Iterable[Session]) -> dict[str, dict[str, int]]:
    """Judgements for scoring recommendations: each user's held-out document, grade 1."""
    return {session.user_id: {session.held_out: 1} for session in sessions}


def _shuffle_key(seed: int, query_id: str, doc_id: str) -> bytes:
    """A stable pseudo-random sort key for ``doc_id`` within ``query_id``'s journey."""
    material = f"{seed}\x1f{query_id}\x1f{doc_id}".encode()
    return hashlib.blake2b(material, digest_size=16).digest()
