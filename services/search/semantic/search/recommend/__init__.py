"""Recommend and Track over gRPC: the servicer's side (``service``); the settings and the
logic is in :mod:`semantic.core.recommend`, the SQL in :mod:`semantic.store.postgres`."""
