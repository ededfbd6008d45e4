"""Guardian rule matching: patterns compiled with RE2 (time linear in the text, so no rule
can hang a check), a tenant's rules compiled once into a :class:`CompiledRules`, a text's
lines and columns (:class:`TextIndex`) and the search of one text (:class:`Scan`).

Every pattern runs in multi-line mode (``^`` and ``$`` at line starts and ends); a literal
is escaped; ``case_insensitive`` adds ``(?i)``. Each pattern's program is bounded by
:data:`RULE_MAX_MEM`. A check first runs the rules as one ``re2.Set`` (one pass over the
text tells which rules match anywhere), then only those rules one by one for their
positions. A sentinel ``\\z`` pattern in the set tells that the pass reached the end of
the text; when it is missing (the set's automaton ran out of memory) every rule is run.

Positions: line ends are LF, CRLF and a lone CR (the text is searched with each of them
read as LF, so a column never counts a CR); lines and columns are 1-based, columns count
Unicode code points.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import re2
import structlog

if TYPE_CHECKING:
    from semantic.core.rules import Rule

log = structlog.get_logger(__name__)

RULE_MAX_MEM = 1 << 20
"""Bytes RE2 may use for one rule's program and automata (a larger pattern is refused)."""
SET_MAX_MEM = 32 << 20
"""Bytes RE2 may use for a tenant's set of rules (beyond it rules run one by one)."""
SET_FROM = 4
"""Rules in scope from which a check runs the set pass first (fewer are searched directly)."""
CHECK_EVERY = 256
"""Matches of one rule between two looks at the clock."""
_CONTINUATION = bytes(range(0x80, 0xC0))


class PatternError(Exception):
    """A pattern RE2 cannot use; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def _options(max_mem: int) -> Any:
    options = re2.Options()
    options.max_mem = max_mem
    options.log_errors = False
    return options


def regex_source(pattern: str, *, regex: bool, case_insensitive: bool) -> bytes:
    """The RE2 source a rule runs: flags, then the pattern (escaped when literal)."""
    body = pattern if regex else re2.escape(pattern)
    return ("(?mi)" if case_insensitive else "(?m)").encode() + body.encode()


def compile_pattern(pattern: str, *, regex: bool, case_insensitive: bool) -> Any:
    """The compiled pattern (searching UTF-8 bytes); PatternError when RE2 refuses it,
    its program is too large, or it matches the empty text."""
    if regex and _any_byte(pattern):
        raise PatternError(
            "uses \\C (any single byte), which can match part of a character: use . instead"
        )
    source = regex_source(pattern, regex=regex, case_insensitive=case_insensitive)
    try:
        compiled = re2.compile(source, _options(RULE_MAX_MEM))
    except re2.error as exc:
        reason = exc.args[0] if exc.args else ""
        text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        text = text.replace(source[: source.index(b")") + 1].decode(), "", 1)  # our flags
        if "too large" in text:
            raise PatternError(
                f"is too large once compiled (RE2 allows {RULE_MAX_MEM >> 20} MiB per rule)"
            ) from exc
        raise PatternError(f"is not a valid RE2 pattern: {text}") from exc
    if compiled.search(b"") is not None:
        raise PatternError("matches the empty text (a rule must match at least one character)")
    return compiled


def _any_byte(pattern: str) -> bool:
    """Whether ``pattern`` has RE2's ``\\C`` (an unescaped backslash, then C)."""
    escaped = False
    for char in pattern:
        if escaped:
            if char == "C":
                return True
            escaped = False
        elif char == "\\":
            escaped = True
    return False


@dataclass(frozen=True)
class Entry:
    """A compiled rule and the node it belongs to."""

    node_id: str
    rule: Rule
    regex: Any


class CompiledRules:
    """A tenant's rules compiled once (in the order given), and the set over all of them."""

    def __init__(self, rules: Sequence[tuple[str, Rule]]) -> None:
        self.entries: list[Entry] = []
        for node_id, rule in rules:
            try:
                regex = compile_pattern(
                    rule.pattern,
                    regex=rule.kind == "regex",
                    case_insensitive=rule.case_insensitive,
                )
            except PatternError as exc:  # stored before a check refused it: skipped
                log.warning("rule_skipped", node_id=node_id, rule_id=rule.id, reason=exc.reason)
                continue
            self.entries.append(Entry(node_id, rule, regex))
        self._set = self._build_set()

    def _build_set(self) -> Any:
        if len(self.entries) < SET_FROM:
            return None
        found = re2.Set.SearchSet(_options(SET_MAX_MEM))
        try:
            for entry in self.entries:
                found.Add(entry.regex.pattern)
            found.Add(rb"\z")
            found.Compile()
        except re2.error:
            log.info("rule_set_skipped", rules=len(self.entries))
            return None
        return found

    def candidates(self, data: bytes) -> set[int] | None:
        """Indexes of the rules matching somewhere in ``data`` (None: not known, run all)."""
        if self._set is None:
            return None
        found = self._set.Match(data) or []
        if len(self.entries) not in found:  # the pass did not reach the end of the text
            return None
        return set(found)


class TextIndex:
    """A text as searched (line ends read as LF, UTF-8), with lines and columns."""

    def __init__(self, text: str) -> None:
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        self.data = text.encode("utf-8", "surrogatepass")
        self._ascii = len(self.data) == len(text)
        self._starts: list[int] | None = None

    def _line_starts(self) -> list[int]:
        if self._starts is None:
            starts = [0]
            at = self.data.find(b"\n")
            while at >= 0:
                starts.append(at + 1)
                at = self.data.find(b"\n", at + 1)
            self._starts = starts
        return self._starts

    def _chars(self, start: int, end: int) -> int:
        if self._ascii:
            return end - start
        return len(self.data[start:end].translate(None, _CONTINUATION))

    def positions(self, offsets: Sequence[int]) -> dict[int, tuple[int, int]]:
        """(line, column) of byte offsets, both 1-based; an offset just after a line's
        end is column ``len(line) + 1`` (line ends are not characters of a line)."""
        starts = self._line_starts()
        out: dict[int, tuple[int, int]] = {}
        line, at, column = -1, 0, 0
        for offset in sorted(set(offsets)):
            index = bisect.bisect_right(starts, offset) - 1
            if index != line:  # counted from the line's start, else from the last offset
                line, at, column = index, starts[index], 0
            column += self._chars(at, offset)
            at = offset
            out[offset] = (line + 1, column + 1)
        return out

    def excerpt(self, start: int, end: int, max_chars: int) -> str:
        """The text from ``start`` to ``end`` (bytes), cut at ``max_chars`` characters."""
        piece = self.data[start : min(end, start + 4 * max_chars)]
        return piece.decode("utf-8", "replace")[:max_chars]


@dataclass(frozen=True)
class Found:
    """One match: byte offsets in :attr:`TextIndex.data`, end exclusive."""

    start: int
    end: int
    rule: Entry


class Scan:
    """One check's search, run on a worker thread and read from the event loop.

    Results are published rule by rule: a snapshot holds only rules searched through the
    whole text. The search stops before the next rule (or within a rule, every
    :data:`CHECK_EVERY` matches) once the deadline passes or :meth:`stop` is called.
    """

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.budget_exceeded = False
        self._stopped = False
        self._lock = threading.Lock()
        self._found: list[Found] = []
        self._checked = 0
        self._chosen: list[int] = []
        self._text: TextIndex | None = None

    def stop(self) -> None:
        """Stop at the next look at the clock."""
        self._stopped = True

    def _over(self) -> bool:
        if self._stopped or time.monotonic() >= self.deadline:
            self.budget_exceeded = self.budget_exceeded or not self._stopped
            return True
        return False

    def snapshot(self) -> tuple[list[Found], int, int, TextIndex | None]:
        """(matches, rules searched, rules in scope, the text) so far."""
        with self._lock:
            return list(self._found), self._checked, len(self._chosen), self._text

    def choose(self, chosen: Sequence[int]) -> None:
        """The rules (indexes into ``CompiledRules.entries``) to search for."""
        with self._lock:
            self._chosen = list(chosen)

    def run(self, rules: CompiledRules, text: str, cap: int) -> None:
        """Search ``text`` for the rules chosen; at most ``cap + 1`` matches of a rule are
        kept (more could never be among the first ``cap`` of the check)."""
        chosen = self._chosen
        if not chosen or self._over():
            return
        index = TextIndex(text)
        with self._lock:
            self._text = index
        candidates = rules.candidates(index.data) if len(chosen) >= SET_FROM else None
        for i in chosen:
            if self._over():
                return
            found: list[Found] = []
            if candidates is None or i in candidates:
                entry = rules.entries[i]
                for n, match in enumerate(entry.regex.finditer(index.data), 1):
                    start, end = match.span()
                    if end > start:
                        found.append(Found(start, end, entry))
                        if len(found) > cap:
                            break
                    if n % CHECK_EVERY == 0 and self._over():
                        return
            with self._lock:
                self._found.extend(found)
                self._checked += 1
