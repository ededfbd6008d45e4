"""Domain values: nodes, filters, queries and hits (no protobuf, no SQL)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    from semantic.core.modifiers import Contribution, Modifier
    from semantic.core.relations import Relation
    from semantic.core.rules import Rule

_Frozen = TypeVar("_Frozen")

DEFAULT_VECTOR = "content"
MAX_TARGETS = 8
"""Named vectors one dense search may combine (each adds a scan)."""
MAX_WEIGHT = 100.0
"""The largest weight of a searched vector or of a hybrid side: weights are relative, and
sums and products of them stay far from overflowing."""
MIN_TARGET_WEIGHT = 1e-6
"""The smallest weight of a searched vector (its products with similarities stay far from
underflowing)."""
MIN_VECTOR_LENGTH = 1e-6
MAX_VECTOR_LENGTH = 1e6
"""The Euclidean lengths a stored or query vector may have. Cosine similarity is computed in
float32, where the squares of a much longer vector overflow and those of a much shorter
one vanish: either makes every score NaN. (A half-precision index bounds components
further: ``spaces.check_half_range``.)"""
MAX_HYBRID_CANDIDATES = 2000
MAX_EXPANSION_DOCS = 10
"""At most this many first-pass hits expand a hybrid query (``HybridParams.expansion_docs``)."""
"""Candidates per side a hybrid search fuses at most (a larger request is capped)."""


@dataclass(frozen=True)
class NodeRecord:
    """A content node as stored (the source of truth; vectors live apart)."""

    tenant: str
    id: str
    content_type: str
    slug: str | None = None
    title: str = ""
    body: str = ""
    texts: Mapping[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    version: int = 0
    content_hash: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    relations: tuple[Relation, ...] | None = None
    """Outgoing client relations. On a write: None keeps the stored ones, a tuple (even
    empty) replaces them. Read back: only when relations are asked for."""
    rules: tuple[Rule, ...] | None = None
    """Guardian rules. On a write: None keeps the stored ones, a tuple (even empty)
    replaces them. Read back: only when rules are asked for."""
    vectors_hash: str = ""
    """On a write: the digest of the client-supplied vectors given with it ('' for none),
    part of ``content_hash``, so that new vectors for the same text are a new content. Not
    stored apart (read back: '')."""

    @classmethod
    def partial(
        cls, tenant: str, node_id: str, content_type: str, updated_at: datetime | None
    ) -> NodeRecord:
        """A node of which only the id, type and update time were read (the other fields
        at their defaults): the same value as ``NodeRecord(tenant, node_id, content_type,
        updated_at=updated_at)``, made without the dataclass's field-by-field ``__init__``
        (a recommendation scores a hundred and fifty of them per call)."""
        return assembled(
            cls,
            NODE_DEFAULTS,
            tenant=tenant,
            id=node_id,
            content_type=content_type,
            updated_at=updated_at,
            texts={},
            metadata={},
        )

    def text_for(self, name: str) -> str:
        """The text a named vector is made from: ``texts[name]``, else title + body."""
        if name in self.texts:
            return self.texts[name]
        if name == "title":
            return self.title
        return " ".join(part for part in (self.title.strip(), self.body.strip()) if part)


def assembled(
    cls: type[_Frozen], base: Mapping[str, Any] = MappingProxyType({}), /, **values: Any
) -> _Frozen:
    """An instance of the frozen dataclass ``cls`` holding ``base`` updated with
    ``values``, made without its generated ``__init__`` (which sets one field after the
    other through ``object.__setattr__``, at less than half the speed): for values made by
    the hundred per request. Equal to ``cls(**base, **values)`` when the two name every
    field; nothing is filled in or checked, so callers give every field."""
    made = object.__new__(cls)
    made.__dict__.update(base, **values)
    return made


_PLAINLY_VALID_SQUARES = ((2 * MIN_VECTOR_LENGTH) ** 2, (MAX_VECTOR_LENGTH / 2) ** 2)
"""Sums of squares (float64, of a float32 vector) that leave no doubt about its length."""


def vector_problem(vector: np.ndarray[Any, Any]) -> str | None:
    """Why a one-dimensional float vector cannot be compared by cosine similarity (NaN or
    infinite values, all zeros, a length outside ``MIN_VECTOR_LENGTH``..``MAX_VECTOR_LENGTH``),
    or None when it can."""
    array = np.asarray(vector)
    if array.ndim == 1 and array.dtype == np.float32:
        # One pass for the common case (every query vector is checked): a NaN or an
        # infinity makes the sum of squares NaN or infinite, which no bound admits. In
        # float64 no float32 value's square overflows (nor warns).
        wide = array.astype(np.float64)
        squares = float(np.dot(wide, wide))
        if _PLAINLY_VALID_SQUARES[0] <= squares <= _PLAINLY_VALID_SQUARES[1]:
            return None
    if not np.isfinite(vector).all():
        return "holds NaN or infinite values"
    length = float(np.linalg.norm(np.asarray(vector, dtype=np.float64)))
    if length == 0:
        return "is all zeros (no direction to compare)"
    if not MIN_VECTOR_LENGTH <= length <= MAX_VECTOR_LENGTH:
        return (
            f"has length {length:.3g}; a vector's length must be between"
            f" {MIN_VECTOR_LENGTH:g} and {MAX_VECTOR_LENGTH:g} (similarity is computed in float32)"
        )
    return None


NODE_DEFAULTS = MappingProxyType(
    {f.name: f.default for f in fields(NodeRecord) if f.default is not MISSING}
)
"""NodeRecord's plain defaults (those with a factory are made anew by whoever uses these
with ``assembled``)."""


@dataclass(frozen=True)
class NumberRange:
    """Inclusive/exclusive numeric bounds; None means unbounded."""

    gte: float | None = None
    gt: float | None = None
    lte: float | None = None
    lt: float | None = None


@dataclass(frozen=True)
class TimeRange:
    """[start, end) in time; None means unbounded."""

    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class MetadataCondition:
    """One test on a metadata key (dotted path for nested objects)."""

    key: str
    equals: Any = None
    any_of: tuple[Any, ...] | None = None
    number_range: NumberRange | None = None
    time_range: TimeRange | None = None
    exists: bool | None = None
    negate: bool = False


@dataclass(frozen=True)
class Filter:
    """Restrictions on which nodes may be returned; empty means no restriction."""

    content_types: tuple[str, ...] = ()
    tags_any: tuple[str, ...] = ()
    tags_all: tuple[str, ...] = ()
    tags_none: tuple[str, ...] = ()
    metadata: tuple[MetadataCondition, ...] = ()
    created: TimeRange | None = None
    updated: TimeRange | None = None
    ids: tuple[str, ...] = ()
    exclude_ids: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        """True when the filter restricts nothing."""
        return self == Filter()


class Mode(StrEnum):
    """How a query is matched."""

    DENSE = "dense"
    KEYWORD = "keyword"
    HYBRID = "hybrid"


@dataclass(frozen=True)
class VectorTarget:
    """A named vector to search and its weight in the combined score."""

    name: str = DEFAULT_VECTOR
    weight: float = 1.0


class Fusion(StrEnum):
    """How a hybrid search combines its dense and keyword candidates (``semantic.core.fusion``)."""

    RRF = "rrf"
    """Reciprocal rank fusion: ``weight / (rrf_k + rank)`` per side; ranks only."""
    RELATIVE_SCORE = "relative_score"
    """Each side's scores min-max normalised to [0, 1] over its candidates, weighted sum."""
    DISTRIBUTION = "distribution"
    """Each side's scores mapped from [mean - 3 std, mean + 3 std] to [0, 1], weighted sum."""


@dataclass(frozen=True)
class HybridParams:
    """How a hybrid search fuses ``candidates`` nodes of each side: by ``fusion`` (reciprocal
    rank fusion with ``rrf_k``, or a score fusion), each side weighted (the defaults of the
    unset parts are the service's settings)."""

    rrf_k: int
    candidates: int
    dense_weight: float = 1.0
    keyword_weight: float = 1.0
    fusion: Fusion = Fusion.RRF
    expansion_docs: int = 0
    """Query expansion: the dense side is searched again with the query vector plus
    ``expansion_weight`` x the mean unit vector of this many first-pass fused hits (0: off)."""
    expansion_weight: float = 1.0


@dataclass(frozen=True)
class SearchQuery:
    """A validated search, ready for the core."""

    tenant: str
    mode: Mode
    text: str | None = None
    vector: np.ndarray[Any, Any] | None = None
    targets: tuple[VectorTarget, ...] = (VectorTarget(),)
    hybrid: HybridParams | None = None
    """How a hybrid search fuses its two sides (None for the other modes)."""
    filter: Filter = Filter()
    top_k: int = 10
    offset: int = 0
    min_score: float | None = None
    include_body: bool = False
    modifiers: tuple[Modifier, ...] = ()
    """Score modifiers of the request (when given, the defaults do not apply)."""
    default_modifiers: bool = True
    """Whether the content types' default modifiers apply when ``modifiers`` is empty."""


@dataclass(frozen=True)
class ChunkMatch:
    """The chunk of a node that matched a dense query best."""

    vector_name: str
    chunk_index: int
    span_start: int
    span_end: int
    similarity: float


@dataclass
class Hit:
    """One result with the parts of its score."""

    node_id: str
    score: float
    dense_rank: int | None = None
    dense_score: float | None = None
    keyword_rank: int | None = None
    keyword_score: float | None = None
    fused_score: float | None = None
    dense_normalized: float | None = None
    """Score fusions: the dense score normalised to [0, 1] among the dense candidates."""
    keyword_normalized: float | None = None
    """Score fusions: the keyword score normalised to [0, 1] among the keyword candidates."""
    dense_part: float | None = None
    """Hybrid: the dense side's share of ``fused_score`` (0 when not a dense candidate)."""
    keyword_part: float | None = None
    """Hybrid: the keyword side's share of ``fused_score`` (0 when not a keyword candidate)."""
    chunk: ChunkMatch | None = None
    target_scores: dict[str, float] = field(default_factory=dict)
    node: NodeRecord | None = None
    base_score: float | None = None
    """The score before score modifiers (None: none applied)."""
    contributions: list[Contribution] = field(default_factory=list)
    """Each score modifier's contribution, in the order applied."""


@dataclass(frozen=True)
class DenseHit:
    """One node found by vector similarity (with its row when the search attached it)."""

    node_id: str
    score: float
    chunk: ChunkMatch
    target_scores: dict[str, float] = field(default_factory=dict)
    node: NodeRecord | None = None
