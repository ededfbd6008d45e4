"""The Admin service on the event pipeline, with real NATS JetStream, indexer, PostgreSQL
and embedder: dead letters listed (reason, preview), replayed (a fixed one is applied, an
invalid one is dead-lettered again) and discarded; the health report shows NATS, the
consumers' backlog and the dead-letter count; without NATS the search service starts,
serves and reports NATS down."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import grpc
import pytest
from indexer_kit import (
    content_event,
    dead_letters,
    node_versions,
    publish,
    publish_raw,
    running_indexer,
    running_search,
    search_env,
    wait_for,
    wait_for_streams,
)
from nats.aio.client import Client as NatsClient

from semantic.tools.devstack import EmbeddedNats, free_port
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

BINARY = bytes(range(32)) * 2  # no protobuf (field number 0), no text


def _nats(report: pb.HealthReportResponse) -> pb.ComponentHealth:
    return next(c for c in report.components if c.name == "nats")


async def _letters(
    admin: search_pb2_grpc.AdminStub, **fields: object
) -> pb.ListDeadLettersResponse:
    reply: pb.ListDeadLettersResponse = await admin.ListDeadLetters(
        pb.ListDeadLettersRequest(**fields)  # type: ignore[arg-type]
    )
    return reply


@pytest.fixture
def searching(database_url: str, embedder_address: str, fp32_model_dir: Path) -> dict[str, str]:
    """The environment of a search service on this test's database (no NATS)."""
    return search_env(database_url, embedder_address, fp32_model_dir)


async def test_dead_letters_are_listed_replayed_and_discarded(
    nc: NatsClient,
    env: dict[str, str],
    searching: dict[str, str],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = env["NATS_URL"]
    async with running_indexer(env, monkeypatch):  # SEMANTIC_INDEXER_MAX_DELIVER=3
        await wait_for_streams(url)
        async with running_search({**searching, "NATS_URL": url}, monkeypatch) as channel:
            admin = search_pb2_grpc.AdminStub(channel)
            searcher = search_pb2_grpc.SearchStub(channel)
            await publish(nc, content_event("a", 1, title="A", body="first", slug="home"))

            async def a_indexed() -> bool:
                return "a" in await node_versions(database_url)

            await wait_for(a_indexed, what="node a")
            await publish_raw(
                nc, "semantic.content._.page", BINARY, {"Content-Type": "application/protobuf"}
            )
            await publish(nc, content_event("", 1, title="No id", body="Neither id nor slug."))
            # Valid, but node a holds the slug: retried, then dead-lettered (max_deliver).
            await publish(nc, content_event("b", 1, title="B", body="second", slug="home"))

            async def three_dead() -> bool:
                return len(await dead_letters(url)) == 3

            await wait_for(three_dead, what="three dead letters")

            report = await admin.HealthReport(pb.HealthReportRequest())
            assert _nats(report).status == pb.COMPONENT_STATUS_OK
            assert "nats-server" in _nats(report).detail
            assert report.dead_letters == 3
            assert report.HasField("lag")
            assert report.lag.dead_letters == 3
            assert {c.consumer for c in report.consumers} == {"indexer", "indexer-users"}

            listed = await _letters(admin)
            assert listed.total == 3
            seqs = [letter.seq for letter in listed.letters]
            assert seqs == sorted(seqs, reverse=True)  # newest first
            by_reason = {letter.reason: letter for letter in listed.letters}
            assert set(by_reason) == {"decode_error", "invalid", "max_deliver"}

            binary = by_reason["decode_error"]
            assert binary.original_subject == "semantic.content._.page"
            assert binary.subject == "semantic.dlq.content._.page"
            assert binary.preview_encoding == pb.PAYLOAD_ENCODING_BASE64
            assert base64.b64decode(binary.payload_preview) == BINARY
            assert binary.size_bytes == len(BINARY)
            assert binary.content_type == "application/protobuf"

            invalid = by_reason["invalid"]
            assert invalid.detail.startswith("node.id")
            assert invalid.preview_encoding == pb.PAYLOAD_ENCODING_PROTOBUF_JSON
            assert json.loads(invalid.payload_preview)["node"]["title"] == "No id"
            assert invalid.HasField("time")

            conflict = by_reason["max_deliver"]
            assert conflict.deliveries == 3
            assert "slug" in conflict.detail
            assert json.loads(conflict.payload_preview)["node"]["id"] == "b"

            # Filters and pages.
            only = await _letters(admin, reason="invalid")
            assert [letter.seq for letter in only.letters] == [invalid.seq]
            assert only.total == 3
            first = await _letters(admin, limit=1)
            rest = await _letters(admin, before_seq=first.letters[0].seq)
            assert [x.seq for x in (*first.letters, *rest.letters)] == seqs

            # Requests are validated; a sequence must exist.
            for bad in (
                pb.ReplayDeadLettersRequest(),
                pb.ReplayDeadLettersRequest(seqs=[invalid.seq, invalid.seq]),
                pb.ReplayDeadLettersRequest(seqs=[invalid.seq], all=True),
                pb.ReplayDeadLettersRequest(seqs=[invalid.seq], reason="invalid"),
                pb.ReplayDeadLettersRequest(seqs=list(range(1, 1002))),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await admin.ReplayDeadLetters(bad)
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await admin.DiscardDeadLetters(pb.DiscardDeadLettersRequest(seqs=[seqs[0], 999999]))
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
            assert "999999" in (caught.value.details() or "")
            assert (await _letters(admin)).total == 3  # nothing was done
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await admin.ListDeadLetters(pb.ListDeadLettersRequest(limit=501))
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT

            # An invalid event replayed fails the same way: dead-lettered again (new seq).
            replayed = await admin.ReplayDeadLetters(
                pb.ReplayDeadLettersRequest(seqs=[invalid.seq])
            )
            assert replayed.replayed == 1
            assert not replayed.failures

            async def dead_again() -> bool:
                again = await _letters(admin, reason="invalid")
                return [x.seq for x in again.letters] not in ([], [invalid.seq])

            await wait_for(dead_again, what="the replayed invalid event dead-lettered again")
            again = (await _letters(admin, reason="invalid")).letters
            assert len(again) == 1
            assert again[0].seq > invalid.seq

            # The conflict fixed (node a deleted, the slug free), its replay is applied.
            await searcher.Delete(pb.DeleteRequest(ids=["a"]))
            replayed = await admin.ReplayDeadLetters(
                pb.ReplayDeadLettersRequest(all=True, reason="max_deliver")
            )
            assert replayed.replayed == 1

            async def b_indexed() -> bool:
                return "b" in await node_versions(database_url)

            await wait_for(b_indexed, what="the replayed event applied")
            got = await searcher.Get(pb.GetRequest(slugs=["home"]))
            assert [node.id for node in got.nodes] == ["b"]

            left = await _letters(admin)
            assert {x.reason for x in left.letters} == {"decode_error", "invalid"}
            discarded = await admin.DiscardDeadLetters(pb.DiscardDeadLettersRequest(all=True))
            assert discarded.discarded == 2
            empty = await _letters(admin)
            assert list(empty.letters) == []
            assert empty.total == 0
            report = await admin.HealthReport(pb.HealthReportRequest())
            assert report.dead_letters == 0


async def test_search_starts_and_serves_without_nats_and_reports_it(
    searching: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    server = EmbeddedNats(tmp_path / "nats", port=port)
    env = {**searching, "NATS_URL": f"nats://127.0.0.1:{port}"}
    try:
        # Nothing listens on the NATS port yet: start-up does not wait for it.
        async with running_search(env, monkeypatch) as channel:
            admin = search_pb2_grpc.AdminStub(channel)
            searcher = search_pb2_grpc.SearchStub(channel)

            async def nats_is(status: int) -> bool:
                report = await admin.HealthReport(pb.HealthReportRequest())
                return _nats(report).status == status

            report = await admin.HealthReport(pb.HealthReportRequest())
            assert _nats(report).status == pb.COMPONENT_STATUS_DOWN
            assert report.status == pb.COMPONENT_STATUS_DOWN
            assert not report.HasField("lag")
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await admin.ListDeadLetters(pb.ListDeadLettersRequest())
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            await searcher.Upsert(
                pb.UpsertRequest(
                    nodes=[cpb.Node(id="n1", content_type="page", title="Sourdough starter")]
                )
            )
            found = await searcher.Search(pb.SearchRequest(text="bread starter"))
            assert [hit.node.id for hit in found.hits] == ["n1"]

            # NATS comes: the background connection finds it.
            await asyncio.to_thread(server.start)
            await wait_for(lambda: nats_is(pb.COMPONENT_STATUS_OK), what="nats OK")
            listed = await admin.ListDeadLetters(pb.ListDeadLettersRequest())
            assert listed.total == 0  # no dead-letter stream yet: nothing to list

            # NATS goes: search keeps serving, the report says so.
            await asyncio.to_thread(server.stop)
            await wait_for(lambda: nats_is(pb.COMPONENT_STATUS_DOWN), what="nats DOWN")
            found = await searcher.Search(pb.SearchRequest(text="bread starter"))
            assert [hit.node.id for hit in found.hits] == ["n1"]
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await admin.DiscardDeadLetters(pb.DiscardDeadLettersRequest(all=True))
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await asyncio.to_thread(server.stop)


async def test_without_nats_url_the_nats_component_is_not_checked(
    searching: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NATS_URL", raising=False)
    monkeypatch.delenv("SEMANTIC_NATS_URL", raising=False)
    async with running_search(searching, monkeypatch) as channel:
        admin = search_pb2_grpc.AdminStub(channel)
        report = await admin.HealthReport(pb.HealthReportRequest())
        assert _nats(report).status == pb.COMPONENT_STATUS_UNSPECIFIED
        assert "not configured" in _nats(report).detail
        assert report.status == pb.COMPONENT_STATUS_OK
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await admin.ReplayDeadLetters(pb.ReplayDeadLettersRequest(all=True))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
