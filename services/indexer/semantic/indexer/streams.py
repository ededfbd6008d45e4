"""The JetStream streams and the durable pull consumer, created or updated at start.

Idempotent: a missing stream or consumer is created, an existing one whose
configuration differs from the settings is updated (the settings win), an identical one
is left alone. Every replica runs this; concurrent runs converge.

The event stream's retention is set last, once both durable consumers exist: with
``interest`` retention an event no consumer is interested in is dropped on arrival, so a
new stream starts as ``limits`` (nothing published meanwhile is lost) and an existing one
keeps its retention until the consumers are in place. The server changes ``limits`` to
``interest`` in place, keeping every unacked event; a change it refuses is logged and the
stream keeps the retention it has.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import BadRequestError, NotFoundError

from semantic.indexer.events import CONTENT_PREFIX, DLQ_PREFIX, FEEDBACK_PREFIX, USER_PREFIX
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
    feedback_consumer: str = ""


def stream_configs(settings: IndexerSettings) -> list[js_api.StreamConfig]:
    """The event stream and the dead-letter stream as the settings describe them."""
    max_age = settings.indexer_stream_max_age_hours * 3600 or None
    common = {
        "storage": js_api.StorageType.FILE,
        "num_replicas": settings.indexer_stream_replicas,
        "duplicate_window": settings.indexer_duplicate_window_s,
    }
    return [
        js_api.StreamConfig(
            name=settings.indexer_stream,
            description="Semantic content and user events",
            subjects=list(settings.indexer_subjects),
            retention=js_api.RetentionPolicy(settings.indexer_stream_retention),
            max_age=max_age,
            **common,  # type: ignore[arg-type]
        ),
        js_api.StreamConfig(
            name=settings.indexer_dlq_stream,
            description="Semantic dead letters (original payload, reason in headers)",
            subjects=[f"{DLQ_PREFIX}.>"],
            retention=js_api.RetentionPolicy.LIMITS,
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


def feedback_consumer_config(settings: IndexerSettings) -> js_api.ConsumerConfig:
    """The shared durable pull consumer of feedback events (same rules as content)."""
    base = consumer_config(settings)
    return base.evolve(
        name=settings.indexer_feedback_consumer,
        durable_name=settings.indexer_feedback_consumer,
        description="Semantic indexer: feedback events to node counters",
        filter_subject=f"{FEEDBACK_PREFIX}.>",
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
    """Create or update both streams and the consumers; returns their names."""
    events, dlq = stream_configs(settings)
    await _ensure_stream(js, dlq)
    retention = await _ensure_stream(js, events, keep_retention=True)
    consumer = consumer_config(settings)
    info = await js.add_consumer(settings.indexer_stream, consumer)  # create or update
    await js.add_consumer(settings.indexer_stream, user_consumer_config(settings))
    await js.add_consumer(settings.indexer_stream, feedback_consumer_config(settings))
    if retention != events.retention:
        await _set_retention(js, events, retention)
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
        feedback_consumer=settings.indexer_feedback_consumer,
    )


async def _ensure_stream(
    js: JetStreamContext, config: js_api.StreamConfig, *, keep_retention: bool = False
) -> js_api.RetentionPolicy | None:
    """Create or update one stream; returns its retention afterwards.

    With ``keep_retention`` a new stream is created as ``limits`` and an existing one keeps
    its retention (the caller sets it once the consumers exist).
    """
    name = config.name
    assert name is not None
    if keep_retention:
        config = config.evolve(retention=js_api.RetentionPolicy.LIMITS)
    try:
        current = await js.stream_info(name)
    except NotFoundError:
        try:
            await js.add_stream(config)
            log.info("stream_created", stream=config.name, subjects=config.subjects)
            return config.retention
        except BadRequestError:  # created meanwhile by another replica
            current = await js.stream_info(name)
    if keep_retention:
        config = config.evolve(retention=current.config.retention)
    if _differs(current.config, config):
        await js.update_stream(config)
        log.info("stream_updated", stream=config.name, subjects=config.subjects)
    return current.config.retention


async def _set_retention(
    js: JetStreamContext, config: js_api.StreamConfig, current: js_api.RetentionPolicy | None
) -> None:
    """Move the event stream to the configured retention, or log why it stays."""
    try:
        await js.update_stream(config)
    except BadRequestError as exc:
        log.warning(
            "stream_retention_kept",
            stream=config.name,
            retention=getattr(current, "value", current),
            wanted=getattr(config.retention, "value", config.retention),
            error=exc.description,
        )
        return
    log.info(
        "stream_retention_set",
        stream=config.name,
        retention=getattr(config.retention, "value", config.retention),
    )


def _differs(current: js_api.StreamConfig, wanted: js_api.StreamConfig) -> bool:
    fields = ("subjects", "retention", "max_age", "num_replicas", "duplicate_window")
    for name in fields:
        have, want = getattr(current, name), getattr(wanted, name)
        if name == "subjects":
            have, want = sorted(have or []), sorted(want or [])
        if name == "max_age":
            have, want = have or 0, want or 0
        if have != want:
            return True
    return (current.description or "") != (wanted.description or "")
