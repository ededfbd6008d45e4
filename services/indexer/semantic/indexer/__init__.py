"""The indexer: content events from NATS JetStream to searchable vectors.

A NATS transport over the core (``semantic.core``: write path, heal), the PostgreSQL store
(``semantic.store.postgres``) and the wire conversion (``semantic.wire``); of
``semantic.search`` it imports only the recommendation engine (user events, archetypes).

events     decode and validate ContentEvents; poison classification
streams    the JetStream streams and the durable pull consumer, created or updated
processor  a batch of changes -> one transaction through the core's write path
consumer   fetch, apply, ack / nak / dead-letter; metrics
app        the process: health, consumer, heal loop, graceful shutdown
"""
