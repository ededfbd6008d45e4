"""Recommend and Track over gRPC: the servicer's side (``service``) and the settings; the
logic is in :mod:`semantic.core.recommend`, the SQL in :mod:`semantic.store.postgres`."""
