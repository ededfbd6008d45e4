"""The indexer: content events from NATS JetStream to searchable vectors.

events     decode and validate ContentEvents; poison classification
streams    the JetStream streams and the durable pull consumer, created or updated
processor  a batch of changes -> one transaction through the shared write path
consumer   fetch, apply, ack / nak / dead-letter; metrics
app        the process: health, consumer, heal loop, graceful shutdown
"""
