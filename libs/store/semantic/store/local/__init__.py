"""The search service's local vector index (degraded reads while PostgreSQL is unreachable):
usearch's HNSW graph and a SQLite file of node fields in one folder. No SQL against
PostgreSQL here; the index is filled from ``semantic.store.postgres.changes``."""
