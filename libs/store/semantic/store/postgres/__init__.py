"""The PostgreSQL + pgvector store: every SQL statement and every asyncpg use.

Pool and codecs, migrations, the node repository, spaces, dense and keyword retrieval,
recommendation reads and writes, maintenance queries, the heal backlog's predicates, the
consistency check's reads, Explore's seeded sample, and the one mapping of asyncpg
errors to the domain's errors. Imports the core (to implement its ports), never a
transport.
"""
