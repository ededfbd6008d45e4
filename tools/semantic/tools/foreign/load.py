"""Writing foreign records into Semantic through the search service's ``Upsert``.

Which vector a node gets (documented in README_vector.md):

- When vectors are kept and a record's vector has the active space's dimension (and only
  finite values), it is sent as the node's client-supplied ``content`` vector.
- Otherwise the node's title and text are embedded by the service (the vector, if any, is
  dropped).
- A record with neither a usable vector nor text is an error naming the record.

Vectors are kept when ``keep_vectors`` says so; by default (``None``) only when ``model``
names the active space's model id: an equal dimension alone does not mean the vectors come
from the same model, and vectors of another model in the same space would make search
compare unrelated numbers.

A batch the service refuses as a whole (INVALID_ARGUMENT) is retried node by node so that
only the bad records fail; any other error stops the load.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import grpc
from google.protobuf import struct_pb2

from semantic.common.errors import InvalidArgument
from semantic.core.domain import vector_problem
from semantic.tools.foreign.records import (
    ForeignRecord,
    MappingOptions,
    describe,
    map_record,
)
from semantic.tools.progress import progress_bar
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

MAX_FAILURES_LISTED = 50


@dataclass(frozen=True)
class LoadOptions:
    """How to load: the tenant, the version every node gets, whether to keep the records'
    vectors (None: when ``model`` is the active space's model), the batch size, the mapping."""

    tenant: str = ""
    version: int = 1
    keep_vectors: bool | None = None
    model: str | None = None
    batch_size: int = 100
    mapping: MappingOptions = field(default_factory=MappingOptions)


@dataclass
class LoadSummary:
    """What a load did."""

    records: int = 0
    kept_vectors: int = 0
    embedded: int = 0
    failed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)
    space: dict[str, Any] = field(default_factory=dict)
    keep_vectors: bool = False

    def fail(self, where: str, problem: str) -> None:
        """Count one failed record (the first ones are listed)."""
        self.failed += 1
        if len(self.failures) < MAX_FAILURES_LISTED:
            self.failures.append({"record": where, "error": problem})

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-able values."""
        return {
            "records": self.records,
            "kept_vectors": self.kept_vectors,
            "embedded": self.embedded,
            "failed": self.failed,
            "outcomes": self.outcomes,
            "failures": self.failures,
            "space": self.space,
            "keep_vectors": self.keep_vectors,
        }


@dataclass
class _Prepared:
    where: str
    node: cpb.Node
    kept: bool


async def load(
    channel: grpc.aio.Channel,
    records: Iterable[ForeignRecord],
    options: LoadOptions,
    *,
    total: int | None = None,
    metadata: tuple[tuple[str, str], ...] | None = None,
) -> LoadSummary:
    """Upsert ``records`` as nodes in batches; returns the summary."""
    stub = search_pb2_grpc.SearchStub(channel)
    stats = await stub.Stats(pb.StatsRequest(tenant=options.tenant), metadata=metadata)
    space = stats.active_space
    keep = options.keep_vectors
    if keep is None:
        keep = options.model is not None and options.model == space.model_id
    summary = LoadSummary(
        space={"id": space.id, "model_id": space.model_id, "dim": space.dim}, keep_vectors=keep
    )
    bar = progress_bar(total or 0, "records")
    try:
        for batch in _batches(enumerate(records), options.batch_size):
            prepared: list[_Prepared] = []
            for position, record in batch:
                summary.records += 1
                try:
                    prepared.append(_prepare(record, position, options, keep, space.dim))
                except InvalidArgument as exc:
                    summary.fail(describe(record, position), str(exc))
            await _send(stub, prepared, summary, metadata)
            bar.update(len(batch))
    finally:
        bar.close()
    return summary


def _batches(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while batch := list(islice(items, max(1, size))):
        yield batch


def _prepare(
    record: ForeignRecord, position: int, options: LoadOptions, keep: bool, dim: int
) -> _Prepared:
    mapped = map_record(record, position, options.mapping)
    where = describe(record, position)
    node = cpb.Node(
        id=mapped.id,
        tenant=options.tenant,
        content_type=mapped.content_type,
        title=mapped.title,
        body=mapped.body,
        version=options.version,
    )
    if mapped.metadata:
        node.metadata.CopyFrom(_struct(mapped.metadata))
    vector = record.vector
    usable = (
        keep and vector is not None and vector.shape == (dim,) and vector_problem(vector) is None
    )
    if usable:
        assert vector is not None
        node.vectors.append(
            cpb.NamedVector(
                name="content",
                vector=cpb.Vector(packed=vector.astype("<f4").tobytes(), dim=dim),
            )
        )
        return _Prepared(where, node, kept=True)
    if not (mapped.title or mapped.body).strip():
        reason = "its vector is missing"
        if vector is not None and vector.shape != (dim,):
            reason = f"its vector has {vector.size} dimensions, the active space {dim}"
        elif vector is not None and not keep:
            reason = "vectors are not kept (see --keep-vectors / --model)"
        elif vector is not None:
            reason = "its vector is not usable (zero, NaN or infinite values)"
        raise InvalidArgument(where, f"has no text to embed and {reason}")
    return _Prepared(where, node, kept=False)


def _struct(metadata: dict[str, Any]) -> struct_pb2.Struct:
    value = struct_pb2.Struct()
    value.update(metadata)
    return value


async def _send(
    stub: search_pb2_grpc.SearchStub,
    prepared: list[_Prepared],
    summary: LoadSummary,
    metadata: tuple[tuple[str, str], ...] | None,
) -> None:
    if not prepared:
        return
    try:
        reply = await stub.Upsert(
            pb.UpsertRequest(nodes=[p.node for p in prepared]), metadata=metadata
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.INVALID_ARGUMENT or len(prepared) == 1:
            if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
                raise
            summary.fail(prepared[0].where, exc.details() or "invalid")
            return
        for one in prepared:  # isolate the records the service refuses
            await _send(stub, [one], summary, metadata)
        return
    for item, result in zip(prepared, reply.results, strict=True):
        outcome = pb.UpsertOutcome.Name(result.outcome).removeprefix("UPSERT_OUTCOME_").lower()
        summary.outcomes[outcome] = summary.outcomes.get(outcome, 0) + 1
        if item.kept:
            summary.kept_vectors += 1
        else:
            summary.embedded += 1
