"""The consumer's decision, one branch at a time: ack, nak (event or outage), isolate,
dead letter (poison or max_deliver), and the delays and headers that go with them."""

import pytest

from semantic.common.errors import DependencyUnavailable
from semantic.indexer.outcome import (
    Ack,
    DeadLetter,
    Failure,
    Fault,
    Isolate,
    Nak,
    RetryLater,
    RetryPolicy,
    attempts,
    dead_letter_headers,
    settle,
)

POLICY = RetryPolicy(max_deliver=4, retry_initial_s=0.5, retry_max_s=3.0)
OWN = Failure(Fault.EVENT, "ValueError: boom")
DOWN = Failure(Fault.DEPENDENCY, "DependencyUnavailable: embedder")


def test_an_applied_event_is_acked_whatever_its_deliveries() -> None:
    assert settle(None, deliveries=1, policy=POLICY) == Ack()
    assert settle(None, deliveries=9, outage_naks=2, policy=POLICY) == Ack()


def test_poison_is_dead_lettered_on_its_first_delivery_with_its_reason() -> None:
    poison = Failure.poison("too_large", "2 MiB")
    assert settle(poison, deliveries=1, policy=POLICY) == DeadLetter("too_large", "2 MiB", 0.5)


def test_poison_in_a_batch_is_still_dead_lettered_not_isolated() -> None:
    poison = Failure.poison("invalid", "node.slug: empty")
    outcome = settle(poison, deliveries=3, batch_size=5, policy=POLICY)
    assert outcome == DeadLetter("invalid", "node.slug: empty", 2.0)


@pytest.mark.parametrize(("deliveries", "delay"), [(1, 0.5), (2, 1.0), (3, 2.0), (9, 3.0)])
def test_a_dependency_down_naks_the_batch_as_an_outage_growing_with_deliveries(
    deliveries: int, delay: float
) -> None:
    outcome = settle(DOWN, deliveries=deliveries, batch_size=8, policy=POLICY)
    assert outcome == Nak(delay, outage=True)


def test_a_dependency_down_never_dead_letters_even_past_max_deliver() -> None:
    assert settle(DOWN, deliveries=50, policy=POLICY) == Nak(3.0, outage=True)


def test_a_batch_failing_for_an_events_own_reason_is_isolated() -> None:
    assert settle(OWN, deliveries=1, batch_size=2, policy=POLICY) == Isolate()


def test_an_event_failing_alone_is_nakd_with_a_delay_for_its_attempt() -> None:
    assert settle(OWN, deliveries=1, policy=POLICY) == Nak(0.5)
    assert settle(OWN, deliveries=3, policy=POLICY) == Nak(2.0)


def test_an_event_failing_at_its_last_attempt_is_dead_lettered_max_deliver() -> None:
    outcome = settle(OWN, deliveries=4, policy=POLICY)
    assert outcome == DeadLetter("max_deliver", "ValueError: boom", 3.0)


def test_outage_naks_do_not_count_as_attempts() -> None:
    # 6 deliveries, 3 of them naks for an outage: the 3rd attempt, not the last.
    assert settle(OWN, deliveries=6, outage_naks=3, policy=POLICY) == Nak(2.0)
    assert settle(OWN, deliveries=7, outage_naks=3, policy=POLICY) == DeadLetter(
        "max_deliver", "ValueError: boom", 3.0
    )


def test_attempts_are_at_least_one() -> None:
    assert attempts(deliveries=2, outage_naks=5) == 1
    assert attempts(deliveries=5, outage_naks=1) == 4


@pytest.mark.parametrize(
    ("attempt", "delay"), [(0, 0.5), (1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (10_000, 3.0)]
)
def test_the_delay_doubles_from_the_initial_one_up_to_the_cap(attempt: int, delay: float) -> None:
    assert POLICY.delay_for(attempt) == delay


def test_a_failure_is_the_dependencys_or_the_events_as_classified() -> None:
    exc = DependencyUnavailable("embedder", "connection refused")
    assert Failure.of(exc, dependency_down=True).fault is Fault.DEPENDENCY
    own = Failure.of(ValueError("boom"), dependency_down=False)
    assert own == Failure(Fault.EVENT, "ValueError: boom")


def test_a_handlers_retry_reason_is_the_detail_as_is() -> None:
    failure = Failure.of(RetryLater("unknown node n1"), dependency_down=False)
    assert failure == Failure(Fault.EVENT, "unknown node n1")


def test_dead_letter_headers_keep_the_origin_and_prefix_the_message_id() -> None:
    headers = dead_letter_headers(
        "semantic.content.acme.upsert",
        {"Nats-Msg-Id": "e1", "Content-Type": "application/json", "Other": "x"},
        "max_deliver",
        "d" * 2000,
        7,
        origin="SEMANTIC:41",
    )
    assert headers == {
        "Semantic-Dlq-Reason": "max_deliver",
        "Semantic-Dlq-Detail": "d" * 1024,
        "Semantic-Original-Subject": "semantic.content.acme.upsert",
        "Semantic-Deliveries": "7",
        "Content-Type": "application/json",
        "Nats-Msg-Id": "dlq:e1",
    }


def test_dead_letter_headers_of_a_message_without_headers() -> None:
    headers = dead_letter_headers(
        "semantic.user.acme", None, "invalid", "x", 1, origin="SEMANTIC:9"
    )
    assert set(headers) == {
        "Semantic-Dlq-Reason",
        "Semantic-Dlq-Detail",
        "Semantic-Original-Subject",
        "Semantic-Deliveries",
        "Nats-Msg-Id",
    }
    assert headers["Nats-Msg-Id"] == "dlq:SEMANTIC:9"  # one dead letter per stored event
