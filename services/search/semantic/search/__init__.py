"""The search service's gRPC transport: semantic.v1.Search and semantic.v1.Admin.

servicer   Search: protobuf -> core values (``semantic.wire``) -> ``semantic.core.service``
admin      Admin: spaces, heal, reindex, health report, through ``semantic.core``
app        the process: settings, the store's adapters, the use cases, health, shutdown
settings   SEMANTIC_* settings of the process
recommend  Recommend and Track: ``semantic.wire.recommend`` -> ``semantic.core.recommend``
"""
