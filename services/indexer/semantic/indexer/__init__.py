"""The indexer: content events from NATS JetStream to searchable vectors.

A NATS transport over the core (``semantic.core``: write path, heal), the PostgreSQL store
(``semantic.store.postgres``) and the wire conversion (``semantic.wire``); it never
imports ``semantic.search`` (an import-linter contract).

events     decode and validate ContentEvents; poison classification
streams    the JetStream streams and the durable pull consumer, created or updated
processor  a batch of changes -> one transaction through the core's write path
consumer   fetch, apply, ack / nak / dead-letter; metrics
users      UserEvents -> the core's tracker (journeys, engagement, archetype scores)
unreadable messages the client cannot parse, dead-lettered from the stream itself
app        the process: health, consumer, heal loop, graceful shutdown
"""
