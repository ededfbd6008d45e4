"""Calls by RPC and status code, the latencies of the successful ones, and examples of the
failures: what a load run counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from semantic.tools.bench.corpus import percentiles

ALLOWED_CODES = frozenset({"OK", "RESOURCE_EXHAUSTED"})
"""Codes a healthy service may answer under overload: OK, or load shed."""


@dataclass
class StatusTally:
    """Calls by RPC and status code, latencies of the successful ones, and the first few
    examples of every failure (RPC + code)."""

    examples_per_kind: int = 3
    codes: dict[str, Counter[str]] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    examples: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def record(self, rpc: str, code: str, ms: float, detail: str = "") -> None:
        """One finished call."""
        self.codes.setdefault(rpc, Counter())[code] += 1
        if code == "OK":
            self.latencies.setdefault(rpc, []).append(ms)
            return
        seen = self.examples.setdefault((rpc, code), [])
        if len(seen) < self.examples_per_kind:
            seen.append(detail[:300])

    def calls(self) -> int:
        """Calls recorded."""
        return sum(sum(c.values()) for c in self.codes.values())

    def by_code(self) -> dict[str, int]:
        """Calls by status code, all RPCs together."""
        total: Counter[str] = Counter()
        for counts in self.codes.values():
            total.update(counts)
        return dict(total.most_common())

    def unexpected(self, allowed: Iterable[str] = ALLOWED_CODES) -> dict[str, int]:
        """Calls whose code is not in ``allowed``, by code."""
        return {code: n for code, n in self.by_code().items() if code not in set(allowed)}

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per RPC: calls, errors (any code but OK), codes, and latency of the OK calls."""
        out: dict[str, dict[str, Any]] = {}
        for rpc in sorted(self.codes):
            counts = self.codes[rpc]
            samples = self.latencies.get(rpc, [])
            out[rpc] = {
                "calls": sum(counts.values()),
                "errors": sum(n for code, n in counts.items() if code != "OK"),
                "codes": dict(counts.most_common()),
                **(percentiles(samples) if samples else {}),
            }
        return out

    def failures(self) -> list[dict[str, Any]]:
        """The kept examples: RPC, code, the server's details."""
        return [
            {"rpc": rpc, "code": code, "details": details}
            for (rpc, code), details in sorted(self.examples.items())
        ]
