"""The soak's pure helpers: the status tally, memory growth, the counters read from the
indexer's metrics, and the event stream's order of writes."""

from __future__ import annotations

import os
import random

import pytest

from semantic.tools.bench.footprint import Footprint, footprint, growth, growth_within
from semantic.tools.bench.soak import counter_by, settled, steady_growth_within, trajectory
from semantic.tools.bench.tally import StatusTally
from semantic.tools.bench.workload import Workload
from semantic.v1 import events_pb2 as epb

MB = 1024 * 1024


def test_tally_counts_calls_by_rpc_and_code_and_times_only_successes() -> None:
    tally = StatusTally()
    for ms in (1.0, 2.0, 3.0):
        tally.record("Search", "OK", ms)
    tally.record("Search", "RESOURCE_EXHAUSTED", 500.0, "busy")
    tally.record("Get", "OK", 4.0)

    summary = tally.summary()

    assert tally.calls() == 5
    assert summary["Search"]["calls"] == 4
    assert summary["Search"]["errors"] == 1
    assert summary["Search"]["codes"] == {"OK": 3, "RESOURCE_EXHAUSTED": 1}
    assert summary["Search"]["p50_ms"] == 2.0  # the 500 ms refusal is not a latency sample
    assert summary["Get"]["p99_ms"] == 4.0
    assert tally.by_code() == {"OK": 4, "RESOURCE_EXHAUSTED": 1}


def test_tally_goal_allows_only_ok_and_resource_exhausted() -> None:
    tally = StatusTally()
    tally.record("Track", "OK", 1.0)
    tally.record("Track", "RESOURCE_EXHAUSTED", 1.0)
    assert tally.unexpected() == {}

    tally.record("Upsert", "INTERNAL", 1.0, "internal error")
    tally.record("Nearest", "NOT_FOUND", 1.0, "no node d7")
    assert tally.unexpected() == {"INTERNAL": 1, "NOT_FOUND": 1}


def test_tally_keeps_a_few_examples_of_each_failure() -> None:
    tally = StatusTally(examples_per_kind=2)
    for i in range(5):
        tally.record("Upsert", "INTERNAL", 1.0, f"failure {i}")
    tally.record("Search", "DEADLINE_EXCEEDED", 30_000.0, "x" * 1000)

    failures = tally.failures()

    assert failures[1] == {
        "rpc": "Upsert",
        "code": "INTERNAL",
        "details": ["failure 0", "failure 1"],
    }
    assert failures[0]["rpc"] == "Search"
    assert len(failures[0]["details"][0]) == 300  # long details are cut
    assert "p50_ms" not in tally.summary()["Upsert"]  # no success, no latency


def test_growth_compares_end_with_start_on_the_chosen_metric() -> None:
    start = {
        "search": Footprint(rss_bytes=100 * MB, pss_bytes=90 * MB, processes=1),
        "postgres": Footprint(rss_bytes=800 * MB, pss_bytes=120 * MB, processes=12),
    }
    end = {
        "search": Footprint(rss_bytes=105 * MB, pss_bytes=95 * MB, processes=1),
        # RSS counts shared buffers once per backend: more backends, "more" memory
        "postgres": Footprint(rss_bytes=1200 * MB, pss_bytes=126 * MB, processes=18),
    }
    peak = {"search": Footprint(rss_bytes=130 * MB, pss_bytes=0, processes=1)}

    report = growth(start, end, metrics={"postgres": "pss"}, peak=peak)

    assert report["search"]["metric"] == "rss"
    assert report["search"]["growth_ratio"] == 1.05
    assert report["search"]["peak_mb"] == 130.0
    assert report["postgres"]["metric"] == "pss"
    assert report["postgres"]["start_mb"] == 120.0
    assert report["postgres"]["growth_ratio"] == 1.05
    assert report["postgres"]["peak_mb"] == 126.0  # no peak sample: the larger of the two
    assert report["postgres"]["rss_mb"] == [800.0, 1200.0]
    assert report["postgres"]["processes"] == [12, 18]
    assert growth_within(report, 0.10)


@pytest.mark.parametrize(("end_mb", "met"), [(109, True), (110, False), (150, False)])
def test_growth_goal_is_strictly_under_the_limit(end_mb: int, met: bool) -> None:
    report = growth(
        {"nats": Footprint(100 * MB, 100 * MB, 1)},
        {"nats": Footprint(end_mb * MB, end_mb * MB, 1)},
        metrics={},
    )
    assert growth_within(report, 0.10) is met


def test_growth_of_a_process_gone_at_the_end_is_zero_not_an_error() -> None:
    report = growth({"indexer": Footprint(50 * MB, 50 * MB, 1)}, {}, metrics={})
    assert report["indexer"]["end_mb"] == 0.0
    assert report["indexer"]["growth_ratio"] == 0.0


def test_footprint_of_this_process_reads_rss_and_pss() -> None:
    if not os.path.exists("/proc/self/smaps_rollup"):
        pytest.skip("needs Linux /proc")
    mine = footprint(os.getpid())
    assert mine.processes >= 1
    assert mine.rss_bytes > 10 * MB
    assert 0 < mine.pss_bytes <= mine.rss_bytes


def test_counter_by_sums_prometheus_samples_by_label() -> None:
    text = "\n".join(
        [
            "# HELP semantic_indexer_events_total Events handled",
            "# TYPE semantic_indexer_events_total counter",
            'semantic_indexer_events_total{kind="content",outcome="created"} 7.0',
            'semantic_indexer_events_total{kind="content",outcome="deleted"} 2.0',
            'semantic_indexer_events_total{kind="user",outcome="tracked"} 5.0',
            'semantic_indexer_events_created{kind="user",outcome="tracked"} 1.7e9',
            "",
        ]
    )
    assert counter_by(text, "semantic_indexer_events_total", "kind") == {
        ("content",): 9.0,
        ("user",): 5.0,
    }
    assert counter_by(text, "semantic_indexer_dead_letters_total", "reason") == {}


def test_event_stream_versions_increase_and_deletes_follow_upserts() -> None:
    work = Workload([("title", "body text"), ("other", "more text")], users=5)
    rng = random.Random(3)
    versions: dict[str, int] = {}
    live: set[str] = set()
    kinds: set[str] = set()
    for _ in range(2000):
        kind, subject, payload, event_id = work.event(rng)
        kinds.add(kind)
        if kind == "user":
            user = epb.UserEvent.FromString(payload)
            assert subject == "semantic.user._"
            assert user.node_id.startswith("d")  # corpus nodes only: never deleted
            assert user.event_id == event_id
            continue
        content = epb.ContentEvent.FromString(payload)
        node_id = content.node.id
        assert content.event_id == event_id
        assert content.version > versions.get(node_id, 0)
        versions[node_id] = content.version
        if kind == "content_delete":
            assert node_id in live
            live.discard(node_id)
        else:
            assert subject == f"semantic.content._.{content.node.content_type}"
            live.add(node_id)
    assert kinds == {"content_upsert", "content_delete", "user"}


@pytest.mark.unit
def test_trajectory_tells_memory_that_settles_from_memory_that_keeps_growing() -> None:
    mb = 2**20
    settles = [Footprint(v * mb, v * mb, 1) for v in (100, 120, 130, 130, 131, 130, 131)]
    leaks = [Footprint(v * mb, v * mb, 1) for v in (100, 110, 120, 130, 140, 150, 160)]
    settled = trajectory("search", settles, points=4)
    assert settled["timeline_mb"] == [100.0, 130.0, 131.0, 131.0]
    assert settled["second_half_growth_ratio"] == round(131 / 130, 3)
    assert trajectory("search", leaks)["second_half_growth_ratio"] == round(160 / 130, 3)
    assert trajectory("search", [])["timeline_mb"] == []
    assert trajectory("search", [])["window_growth_ratio"] == 1.0


@pytest.mark.unit
def test_the_steady_level_ignores_a_collector_swing_and_sees_a_rising_trend() -> None:
    mb = 2**20
    # A garbage-collected process: the level swings 40-57 MB around a flat mean, and the
    # run happens to end on a high reading (end / start of single readings: 1.40).
    swing = [45, 41, 52, 40, 57, 44, 49, 41, 55, 43] * 6
    swing[-1] = 63
    collected = trajectory("nats", [Footprint(v * mb, v * mb, 1) for v in swing], window=10)
    assert swing[-1] / swing[0] > 1.10
    assert collected["window_growth_ratio"] < 1.10
    assert abs(collected["slope_mb_per_hour"]) < 60 * 60 / 5 * 0.5  # under 0.5 MB per reading
    rising = [100 + 2 * i for i in range(60)]  # 2 MB every reading
    leak = trajectory("search", [Footprint(v * mb, v * mb, 1) for v in rising], window=12)
    assert leak["window_growth_ratio"] > 1.10
    assert leak["slope_mb_per_hour"] == pytest.approx(2 * 3600 / 5)
    report = {"nats": collected, "search": leak}
    assert not steady_growth_within(report, 0.10)
    assert steady_growth_within({"nats": collected}, 0.10)


@pytest.mark.unit
def test_memory_has_settled_when_the_last_minute_matches_the_one_before() -> None:
    mb = 2**20

    def history(values: dict[str, list[int]]) -> list[dict[str, Footprint]]:
        length = len(next(iter(values.values())))
        return [
            {name: Footprint(v[i] * mb, v[i] * mb, 1) for name, v in values.items()}
            for i in range(length)
        ]

    step = {"embedder": [744] * 6 + [824] * 6, "nats": [48, 47, 49, 48, 48, 47] * 2}
    assert not settled(history(step), window=6)  # a step between the two minutes
    flat = {"embedder": [824] * 12, "nats": [48, 47, 49, 48, 48, 47] * 2}
    assert settled(history(flat), window=6)
    assert not settled(history({"nats": [48] * 11}), window=6)  # not two minutes yet
