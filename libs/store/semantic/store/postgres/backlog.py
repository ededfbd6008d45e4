"""The heal backlog in SQL, defined once: which nodes lack vectors in a space, which have
stale ones, and which vector rows have lost their node.

Heal (``maintenance``), Stats (``statistics``) and CheckConsistency (``consistency``) all
count with these predicates, so the three always agree on what "missing", "stale" and
"orphan" mean:

    missing   a node with text to embed and no vector row at all in the space
    stale     a node with a computed (not client-supplied) vector row made from another
              content hash than the node's
    orphan    a vector row whose node no longer exists (deleted or never written)

The node predicates read the node as ``n`` (a row of ``semantic.nodes``); the orphan
predicate reads the vector row as ``v``. Table names come from ``Space.table`` (built
from the integer id), never from input.
"""

from __future__ import annotations

EMBEDDABLE = "(n.title <> '' OR n.body <> '' OR n.texts <> '{}'::jsonb)"
"""The node has some text a writer could embed (nodes without text never get vectors)."""


def has_no_vector(table: str) -> str:
    """True for a node of ``n`` without any vector row in ``table``."""
    return f"NOT EXISTS (SELECT 1 FROM {table} v WHERE v.tenant = n.tenant AND v.node_id = n.id)"


def missing(table: str) -> str:
    """True for a node of ``n`` that should have vectors in ``table`` and has none."""
    return f"({EMBEDDABLE} AND {has_no_vector(table)})"


def stale(table: str) -> str:
    """True for a node of ``n`` with a computed vector in ``table`` made from another
    content hash (the space fixes the model, so the hash is what can go out of date)."""
    return (
        f"EXISTS (SELECT 1 FROM {table} v WHERE v.tenant = n.tenant AND v.node_id = n.id"
        " AND NOT v.client_supplied AND v.content_hash <> n.content_hash)"
    )


def counts(table: str, where: str = "") -> str:
    """One statement counting ``missing`` and ``stale`` over the nodes of ``n`` (``where``
    filters them, e.g. by tenant), with the same meaning as the predicates above but as
    one hash join of the nodes with the vector rows grouped by node, instead of two
    correlated subqueries per node (which at 100k nodes costs ~200k index probes).
    A node is stale when one of its computed rows has another hash: then the smallest or
    the largest computed hash differs from the node's."""
    vector_where = where.replace("n.tenant", "t.tenant")
    return (
        "WITH v AS (SELECT t.tenant, t.node_id,"
        " min(t.content_hash) FILTER (WHERE NOT t.client_supplied) AS lo,"
        " max(t.content_hash) FILTER (WHERE NOT t.client_supplied) AS hi"
        f" FROM {table} t {vector_where} GROUP BY t.tenant, t.node_id)"
        f" SELECT count(*) FILTER (WHERE v.node_id IS NULL AND {EMBEDDABLE}) AS missing,"
        " count(*) FILTER (WHERE v.lo <> n.content_hash OR v.hi <> n.content_hash) AS stale"
        f" FROM semantic.nodes n LEFT JOIN v ON v.tenant = n.tenant AND v.node_id = n.id {where}"
    )


ORPHAN = (
    "NOT EXISTS (SELECT 1 FROM semantic.nodes n WHERE n.tenant = v.tenant AND n.id = v.node_id)"
)
"""True for a vector row of ``v`` whose node no longer exists."""
