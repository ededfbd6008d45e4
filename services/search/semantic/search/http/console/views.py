"""What the console's templates show, computed from the response messages: alerts, the
query lab's rows with their score parts and matched chunk, plain numbers and times.

Pure functions of protobuf messages (no I/O), so the rules are tested without a browser.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from semantic.v1 import search_pb2 as pb

OK, DEGRADED, DOWN = (
    pb.COMPONENT_STATUS_OK,
    pb.COMPONENT_STATUS_DEGRADED,
    pb.COMPONENT_STATUS_DOWN,
)
STATUS_NAMES = {OK: "ok", DEGRADED: "degraded", DOWN: "down"}


CRITICAL_CHECKS = frozenset({"schema_current", "alias_consistent", "spaces_tables_exist"})
CHECK_TITLES = {
    "schema_current": "Schema not current",
    "alias_consistent": "Active space inconsistent",
    "spaces_tables_exist": "A space's table or index is missing",
    "nodes_have_vectors": "Nodes without vectors",
    "no_stale_vectors": "Stale vectors",
    "no_orphan_vectors": "Orphan vectors",
}


@dataclass(frozen=True)
class Alert:
    """Something an operator should look at: severity ``critical`` or ``warning``."""

    severity: str
    title: str
    detail: str


@dataclass
class Trend:
    """The previous overview's counters, to tell whether a number is growing."""

    dead_letters: int | None = None
    pending: int | None = None
    missing: int | None = None


def alerts(
    report: pb.HealthReportResponse | None,
    stats: pb.StatsResponse | None,
    trend: Trend,
    *,
    errors: Mapping[str, str] | None = None,
    consistency: Mapping[str, Any] | None = None,
) -> list[Alert]:
    """The alerts of the overview, most severe first; updates ``trend`` with this view.
    ``consistency``: a CheckConsistency answer (protobuf-JSON); each failed check is one."""
    out: list[Alert] = []
    for name, reason in (errors or {}).items():
        out.append(Alert("critical", f"{name} failed", reason))
    for check in (consistency or {}).get("checks", []):
        if not check.get("ok"):
            name = str(check.get("name", ""))
            severity = "critical" if name in CRITICAL_CHECKS else "warning"
            title = CHECK_TITLES.get(name, name.replace("_", " ").capitalize())
            out.append(Alert(severity, title, str(check.get("summary", ""))))
    if report is not None:
        for component in report.components:
            if component.status == DOWN:
                out.append(Alert("critical", f"{component.name} unreachable", component.detail))
            elif component.status == DEGRADED:
                out.append(Alert("warning", f"{component.name} degraded", component.detail))
        if not report.HasField("active_space"):
            out.append(Alert("critical", "No active embedding space", "nothing can be searched"))
        lag = report.lag if report.HasField("lag") else None
        if lag is not None:
            letters = int(lag.dead_letters)
            if letters and trend.dead_letters is not None and letters > trend.dead_letters:
                new = letters - trend.dead_letters
                detail = f"{letters} dead letters, {new} since the last look"
                out.append(Alert("critical", "Dead letters growing", detail))
            elif letters:
                out.append(
                    Alert("warning", "Dead letters", f"{letters} events wait for a decision")
                )
            pending = int(lag.pending)
            if pending and trend.pending is not None and pending > trend.pending:
                out.append(
                    Alert(
                        "warning",
                        "Indexer backlog growing",
                        f"{pending} events pending (was {trend.pending})",
                    )
                )
            trend.dead_letters, trend.pending = letters, pending
    if stats is not None:
        missing = int(stats.heal_backlog.missing)
        stale = int(stats.heal_backlog.stale)
        if missing or stale:
            growing = trend.missing is not None and missing > trend.missing
            out.append(
                Alert(
                    "critical" if growing else "warning",
                    "Active space incomplete" + (" and falling behind" if growing else ""),
                    f"{missing} nodes without vectors, {stale} with stale vectors: heal",
                )
            )
        trend.missing = missing
        building = [s for s in stats.spaces if s.state == pb.SPACE_STATE_BUILDING]
        for space in building:
            out.append(
                Alert(
                    "warning",
                    f"Space {space.id} building",
                    f"{space.model_id}: {space.build.nodes_done}/{space.build.nodes_total} nodes",
                )
            )
    return sorted(out, key=lambda a: a.severity != "critical")


@dataclass(frozen=True)
class LabRow:
    """One hit of the query lab."""

    rank: int
    node_id: str
    title: str
    content_type: str
    score: float
    parts: Sequence[tuple[str, str]]
    before: str
    match: str
    after: str
    chunk: str


def lab_rows(response: pb.SearchResponse, context_chars: int = 160) -> list[LabRow]:
    """The hits of one mode with their score parts and the matched chunk in its text."""
    rows = []
    for rank, hit in enumerate(response.hits, start=1):
        parts: list[tuple[str, str]] = []
        explanation = hit.explanation
        for name, label in (
            ("dense_rank", "dense rank"),
            ("dense_score", "similarity"),
            ("keyword_rank", "keyword rank"),
            ("keyword_score", "BM25"),
            ("fused_score", "fused"),
            ("dense_normalized", "dense normalised"),
            ("keyword_normalized", "keyword normalised"),
            ("dense_part", "dense part"),
            ("keyword_part", "keyword part"),
        ):
            if explanation.HasField(name):  # type: ignore[arg-type]
                value = getattr(explanation, name)
                parts.append((label, f"{value:.4f}" if isinstance(value, float) else str(value)))
        for target in explanation.targets:
            parts.append((f"{target.name} similarity", f"{target.similarity:.4f}"))
        before = match = after = ""
        chunk = ""
        if hit.HasField("chunk"):
            chunk = f"{hit.chunk.vector_name}#{hit.chunk.chunk_index}"
            text = _text_of(hit.node, hit.chunk.vector_name)
            start, end = hit.chunk.span.start, hit.chunk.span.end
            if text and 0 <= start <= end <= len(text):
                before = ("…" if start > context_chars else "") + text[
                    max(0, start - context_chars) : start
                ]
                match = text[start:end]
                after = text[end : end + context_chars] + (
                    "…" if end + context_chars < len(text) else ""
                )
            else:
                match = hit.chunk.text
        elif hit.node.body:
            after = hit.node.body[: context_chars * 2]
        rows.append(
            LabRow(
                rank,
                hit.node.id,
                hit.node.title,
                hit.node.content_type,
                hit.score,
                parts,
                before,
                match,
                after,
                chunk,
            )
        )
    return rows


def _text_of(node: Any, vector_name: str) -> str:
    """The text a chunk's span points into: ``NodeRecord.text_for`` of the node's message
    (its own text for the name, else the title, else title and body joined)."""
    if vector_name in node.texts:
        return str(node.texts[vector_name])
    if vector_name == "title":
        return str(node.title)
    return " ".join(part for part in (node.title.strip(), node.body.strip()) if part)


_BIDI_CONTROLS = {
    code: f"[U+{code:04X}]" for code in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))
}


def visible_controls(value: object) -> object:
    """A plain string with its bidirectional overrides and isolates shown as ``[U+202E]``
    (so ``\u202egnp.exe`` cannot display as ``exe.png``); anything else (numbers, markup
    made by the templates) as it is. The templates' ``finalize``: every value they write."""
    if type(value) is str:
        return value.translate(_BIDI_CONTROLS)
    return value


def number(value: object, digits: int = 4) -> str:
    """A number with ``digits`` decimals; anything else (protobuf JSON writes a NaN or an
    infinite double as the string "NaN" or "Infinity") as it is."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.{digits}f}"
    return str(value)


def megabytes(value: int) -> str:
    """Bytes as a short human number."""
    size = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"
