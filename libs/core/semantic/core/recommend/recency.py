"""Recency: a node's freshness halves every half-life since its last update."""

from __future__ import annotations

from datetime import datetime


def recency(updated_at: datetime | None, now: datetime, half_life_days: float) -> float:
    """0.5 ** (age in days / half-life), 1 for a node updated now or later (or never)."""
    updated = updated_at or now
    age_days = max(0.0, (now - updated).total_seconds() / 86400)
    return float(0.5 ** (age_days / half_life_days)) if half_life_days > 0 else 0.0
