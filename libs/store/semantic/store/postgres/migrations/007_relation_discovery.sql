-- What the discovered `similar` relations of each node were computed from (README_vector.md,
-- "Discovered relations"): the space and the node's content hash at the time. A node is due
-- for discovery when it has no row here, or its row names another space (a reindex or an
-- activation redoes every node) or another content hash (its content changed), or when
-- `recheck` is ahead of `checked` (a neighbour changed, appeared or went, or a client
-- `similar` relation of it was removed). Bumping `recheck` is one UPDATE that never races a
-- discovery run: the run stores the `recheck` it read as `checked`, so a bump made after that
-- read leaves the node due. A deleted node's row goes with it.

CREATE TABLE IF NOT EXISTS semantic.relation_discovery (
    tenant         text        NOT NULL,
    node_id        text        NOT NULL,
    space_id       integer     NOT NULL,
    content_hash   text        NOT NULL,
    recheck        bigint      NOT NULL DEFAULT 0,
    checked        bigint      NOT NULL DEFAULT 0,
    discovered_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, node_id)
);
