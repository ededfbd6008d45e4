"""Smoothed rates: a node's engagement with a prior of ``a`` pseudo-impressions at the
tenant's mean rate ``p0``, that mean rate itself, and the archetype prior in [0, 1].

    engagement = (clicks + likes + conversions + a * p0) / (impressions + a)

so a node with one view and one click does not beat one with a thousand views and three
hundred clicks.
"""

from __future__ import annotations

from collections.abc import Mapping

MIN_IMPRESSIONS_FOR_RATE = 100
"""Impressions a tenant needs before its own mean rate replaces the default one."""


def engagement(counts: Mapping[str, int], prior_strength: float, rate: float) -> float:
    """The smoothed engagement rate in [0, 1] of a node's counts."""
    engaged = counts["clicks"] + counts["likes"] + counts["conversions"]
    shown = max(counts["impressions"], engaged)
    a = prior_strength
    value = (engaged + a * rate) / (shown + a) if a + shown > 0 else 0.0
    return min(1.0, value)


def tenant_rate(engaged: float, shown: float, default: float) -> float:
    """The tenant's mean engagement rate p0: ``default`` until it has enough impressions."""
    if shown >= MIN_IMPRESSIONS_FOR_RATE:
        return min(1.0, engaged / shown)
    return default


def archetype_prior(score: float, best: float) -> float:
    """The archetype's engagement with a node relative to its best node, in [0, 1]."""
    prior = score / best if best > 0 else 0.0
    return min(1.0, max(0.0, prior))
