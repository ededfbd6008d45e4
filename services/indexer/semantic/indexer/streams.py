"""The JetStream streams and the durable pull consumer, created or updated at start.

Idempotent: a missing stream or consumer is created, an existing one whose
configuration differs from the settings is updated (the settings win), an identical one
is left alone. Every replica runs this; concurrent runs converge.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import BadRequestError, NotFoundError

from semantic.indexer.events import CONTENT_PREFIX, DLQ_PREFIX, USER_PREFIX
from semantic.indexer.settings import IndexerSettings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Topology:
    """Names the consumer loop needs."""

    stream: str
    dlq_stream: str
    consumer: str
    filter_subject: str
    user_consumer: str = ""


def stream_configs(settings: IndexerSettings) -> list[js_api.StreamConfig]:
    """The event stream and the dead-letter stream as the settings describe them."""
    max_age = settings.indexer_stream_max_age_hours * 3600 or None
    common = {
        "retention": js_api.RetentionPolicy.LIMITS,
        "storage": js_api.StorageType.FILE,
        "num_replicas": settings.indexer_stream_replicas,
        "duplicate_window": settings.indexer_duplicate_window_s,
    }
    return [
        js_api.StreamConfig(
            name=settings.indexer_stream,
            description="Semantic content and user events",
            subjects=list(settings.indexer_subjects),
            max_age=max_age,
            **common,  # type: ignore[arg-type]
        ),
        js_api.StreamConfig(
            name=settings.indexer_dlq_stream,
            description="Semantic dead letters (original payload, reason in headers)",
            subjects=[f"{DLQ_PREFIX}.>"],
            **common,  # type: ignore[arg-type]
        ),
    ]


def user_consumer_config(settings: IndexerSettings) -> js_api.ConsumerConfig:
    """The shared durable pull consumer of user events (same rules as content)."""
    base = consumer_config(settings)
    return base.evolve(
        name=settings.indexer_user_consumer,
        durable_name=settings.indexer_user_consumer,
        description="Semantic indexer: user events to journeys and engagement",
        filter_subject=f"{USER_PREFIX}.>",
    )


def consumer_config(settings: IndexerSettings) -> js_api.ConsumerConfig:
    """The shared durable pull consumer of content events.

    ``max_deliver`` is left unlimited on the server: the indexer itself dead-letters an
    event after ``indexer_max_deliver`` attempts that failed for the event's own reasons,
    while attempts that failed because a dependency was down do not count.
    """
    return js_api.ConsumerConfig(
        name=settings.indexer_consumer,
        durable_name=settings.indexer_consumer,
        description="Semantic indexer: content events to vectors",
        deliver_policy=js_api.DeliverPolicy.ALL,
        ack_policy=js_api.AckPolicy.EXPLICIT,
        ack_wait=settings.indexer_ack_wait_s,
        max_deliver=-1,
        filter_subject=f"{CONTENT_PREFIX}.>",
        max_ack_pending=settings.indexer_max_ack_pending,
        max_waiting=512,
    )


async def ensure_topology(js: JetStreamContext, settings: IndexerSettings) -> Topology:
    """Create or update both streams and the consumer; returns their names."""
    for config in stream_configs(settings):
        await _ensure_stream(js, config)
    consumer = consumer_config(settings)
    info = await js.add_consumer(settings.indexer_stream, consumer)  # create or update
    await js.add_consumer(settings.indexer_stream, user_consumer_config(settings))
    log.info(
        "consumer_ready",
        stream=settings.indexer_stream,
        consumer=info.name,
        pending=info.num_pending,
        ack_wait_s=info.config.ack_wait,
    )
    assert consumer.filter_subject is not None
    return Topology(
        stream=settings.indexer_stream,
        dlq_stream=settings.indexer_dlq_stream,
        consumer=settings.indexer_consumer,
        filter_subject=consumer.filter_subject,
        user_consumer=settings.indexer_user_consumer,
    )


async def _ensure_stream(js: JetStreamContext, config: js_api.StreamConfig) -> None:
    assert config.name is not None
    try:
        current = await js.stream_info(config.name)
    except NotFoundError:
        try:
            await js.add_stream(config)
            log.info("stream_created", stream=config.name, subjects=config.subjects)
            return
        except BadRequestError:  # created meanwhile by another replica
            current = await js.stream_info(config.name)
    if _differs(current.config, config):
        await js.update_stream(config)
        log.info("stream_updated", stream=config.name, subjects=config.subjects)


def _differs(current: js_api.StreamConfig, wanted: js_api.StreamConfig) -> bool:
    fields = ("subjects", "max_age", "num_replicas", "duplicate_window")
    for name in fields:
        have, want = getattr(current, name), getattr(wanted, name)
        if name == "subjects":
            have, want = sorted(have or []), sorted(want or [])
        if name == "max_age":
            have, want = have or 0, want or 0
        if have != want:
            return True
    return (current.description or "") != (wanted.description or "")
