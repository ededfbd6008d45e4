"""The NATS JetStream adapter of the core's event-pipeline port
(:class:`semantic.core.pipeline.EventPipeline`): the connection kept in the background,
the stream and consumer names (a settings mixin shared by search and the indexer), and
the reads and writes on the dead-letter stream. Imports the core, never a transport."""
