"""The write path shared by Search.Upsert and the indexer: chunk, embed, then store.

Vectors are computed before the transaction, only for nodes whose content changed
(a metadata-only change never re-embeds), then one transaction writes the batch. If
another writer changed a node in between, the batch is planned and embedded again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import structlog
from prometheus_client import Histogram

from semantic.common.errors import FailedPrecondition, InvalidArgument
from semantic.core.chunking import Chunker
from semantic.core.domain import DEFAULT_VECTOR, NodeRecord
from semantic.core.nodes import (
    DeleteResult,
    Deletion,
    NodeWrite,
    Outcome,
    Replan,
    VectorRow,
    WriteResult,
    decide,
    vectors_hash,
)
from semantic.core.nodes import content_hash as hash_of
from semantic.core.ports import Embedder, NodeStore
from semantic.core.settings import WritePathSettings
from semantic.core.spaces import Space, check_half_range

log = structlog.get_logger(__name__)
Key = tuple[str, str]

EMBED_SECONDS = Histogram(
    "semantic_write_embed_seconds", "Embedding time of one write batch (seconds)"
)
TRANSACTION_SECONDS = Histogram(
    "semantic_write_transaction_seconds", "Database transaction time of one write batch (seconds)"
)


@dataclass(frozen=True)
class WriterConfig:
    """How texts become vectors (defaults: the settings' defaults)."""

    chunking: bool
    title_vector: bool
    max_replans: int = 3


class ContentWriter:
    """Upserts batches of nodes with their vectors into one embedding space."""

    def __init__(
        self,
        nodes: NodeStore,
        embedder: Embedder,
        chunker: Chunker | None,
        config: WriterConfig,
    ) -> None:
        self._nodes = nodes
        self._embedder = embedder
        self._chunker = chunker
        self._config = config

    async def upsert(
        self,
        space: Space,
        nodes: Sequence[NodeRecord],
        client_vectors: Mapping[Key, Sequence[VectorRow]] | None = None,
    ) -> list[WriteResult]:
        """Store ``nodes`` (validated by the caller) and their vectors; one transaction."""
        results, _ = await self.write(space, nodes, (), client_vectors)
        return results

    async def write(
        self,
        space: Space,
        nodes: Sequence[NodeRecord],
        deletes: Sequence[Deletion],
        client_vectors: Mapping[Key, Sequence[VectorRow]] | None = None,
    ) -> tuple[list[WriteResult], list[DeleteResult]]:
        """Upsert ``nodes`` and apply ``deletes`` (other keys) in one transaction.

        Deletes remove the node's vectors from every space and leave a tombstone.
        """
        supplied = client_vectors or {}
        nodes = [
            replace(n, vectors_hash=vectors_hash(supplied.get((n.tenant, n.id), ()))) for n in nodes
        ]
        nodes = [replace(n, content_hash=hash_of(n)) for n in nodes]
        if space.index_precision == "half":
            for i, node in enumerate(nodes):
                for j, row in enumerate(supplied.get((node.tenant, node.id), ())):
                    check_half_range(row.embedding, "half", f"nodes[{i}].vectors[{j}].vector")
        for _attempt in range(self._config.max_replans + 1):
            stored = await self._nodes.stored([(n.tenant, n.id) for n in nodes])
            due = [
                n
                for n in nodes
                if decide(n, stored.get((n.tenant, n.id))) in (Outcome.CREATED, Outcome.UPDATED)
            ]
            with EMBED_SECONDS.time():
                computed = await self.vectors_for(space, due, supplied)
            writes = [NodeWrite(n, computed.get((n.tenant, n.id))) for n in nodes]
            try:
                with TRANSACTION_SECONDS.time():
                    return await self._nodes.write(space, writes, deletes)
            except Replan as replan:
                log.info("upsert_replanned", nodes=len(replan.keys))
        raise FailedPrecondition("nodes kept changing while being written; retry")

    async def rewrite_vectors(self, space: Space, nodes: Sequence[NodeRecord]) -> list[Key]:
        """Re-embed stored ``nodes`` into ``space`` (heal, backfill, reindex).

        Nodes whose content changed since they were read are skipped (a later pass sees
        them again); their client-supplied vectors are kept. Returns the keys rewritten.
        """
        if not nodes:
            return []
        computed = await self.vectors_for(space, nodes, {})
        expected = {(n.tenant, n.id): n.content_hash for n in nodes}
        return await self._nodes.replace_vectors(space, computed, expected)

    @property
    def nodes(self) -> NodeStore:
        """The node store this writer writes through."""
        return self._nodes

    async def vectors_for(
        self,
        space: Space,
        nodes: Sequence[NodeRecord],
        supplied: Mapping[Key, Sequence[VectorRow]],
    ) -> dict[Key, tuple[VectorRow, ...]]:
        """Every vector of every node: client-supplied ones plus embedded chunks."""
        sources: list[tuple[Key, str, str]] = []  # key, vector name, text
        out: dict[Key, list[VectorRow]] = {}
        for node in nodes:
            key = (node.tenant, node.id)
            given = list(supplied.get(key, ()))
            out[key] = given
            given_names = {v.name for v in given}
            for name in self._names(node):
                text = node.text_for(name)
                if name not in given_names and text.strip():
                    sources.append((key, name, text))
        jobs: list[tuple[Key, str, int, int, int]] = []  # key, name, chunk, start, end
        texts: list[str] = []
        for (key, name, text), chunks in zip(
            sources, self._chunks([s[2] for s in sources]), strict=True
        ):
            for index, start, end in chunks:
                jobs.append((key, name, index, start, end))
                texts.append(text[start:end])
        if texts:
            try:
                embedded = await self._embedder.embed(
                    texts, input_type="document", model_id=space.model_id
                )
            except InvalidArgument as exc:
                if exc.field != "model_id":
                    raise
                raise FailedPrecondition(
                    f"the embedder does not serve {space.model_id}, the model of space "
                    f"{space.id}; add its directory to SEMANTIC_EMBEDDER_MODEL_DIRS"
                ) from exc
            if (embedded.model_id, embedded.model_sha256) != (space.model_id, space.model_sha256):
                raise FailedPrecondition(
                    f"the embedder serves {embedded.model_id} ({embedded.model_sha256[:12]}) but "
                    f"space {space.id} holds {space.model_id} ({space.model_sha256[:12]}); "
                    "reindex or point the service at the matching embedder"
                )
            for (key, name, index, start, end), vector in zip(jobs, embedded.vectors, strict=True):
                out[key].append(VectorRow(name, index, start, end, np.asarray(vector)))
        return {key: tuple(rows) for key, rows in out.items()}

    def embeddable(self, node: NodeRecord) -> bool:
        """Whether the node has any text this writer would embed."""
        return any(node.text_for(name).strip() for name in self._names(node))

    def _names(self, node: NodeRecord) -> list[str]:
        names = [DEFAULT_VECTOR, *sorted(n for n in node.texts if n != DEFAULT_VECTOR)]
        if self._config.title_vector and node.title.strip() and "title" not in names:
            names.append("title")
        return names

    def _chunks(self, texts: list[str]) -> list[list[tuple[int, int, int]]]:
        if not self._config.chunking or self._chunker is None:
            return [[(0, 0, len(text))] for text in texts]
        return [
            [(c.index, c.start, c.end) for c in chunks] for chunks in self._chunker.split(texts)
        ]


def writer_from_settings(
    settings: WritePathSettings, nodes: NodeStore, embedder: Embedder, max_tokens: int
) -> ContentWriter:
    """The write path both search and the indexer run, configured the same way."""
    chunker = (
        Chunker(
            settings.search_tokenizer,
            window=min(settings.search_chunk_window, max_tokens),
            overlap=settings.search_chunk_overlap,
        )
        if settings.search_chunking
        else None
    )
    return ContentWriter(
        nodes,
        embedder,
        chunker,
        WriterConfig(chunking=settings.search_chunking, title_vector=settings.search_title_vector),
    )
