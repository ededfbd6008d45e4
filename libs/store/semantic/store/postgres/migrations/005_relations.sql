-- Typed, weighted, directed relations between nodes of one tenant (README_vector.md,
-- "Relations"). Unique per (source, target, type). The endpoints need not exist (events
-- arrive in any order); reads follow only relations whose other end exists, and deleting a
-- node deletes every relation from and to it (in the delete's transaction). `discovered`
-- marks the `similar` relations the heal loop finds from nearest neighbours; a client
-- relation of the same key replaces it and is never replaced by one.

CREATE TABLE IF NOT EXISTS semantic.relations (
    tenant       text             NOT NULL,
    source_id    text             NOT NULL,
    target_id    text             NOT NULL,
    type         text             NOT NULL,
    strength     double precision NOT NULL DEFAULT 1 CHECK (strength >= 0 AND strength <= 1),
    description  text             NOT NULL DEFAULT '',
    discovered   boolean          NOT NULL DEFAULT false,
    created_at   timestamptz      NOT NULL DEFAULT now(),
    updated_at   timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, source_id, target_id, type),
    CHECK (source_id <> target_id)
);
CREATE INDEX IF NOT EXISTS relations_target_idx ON semantic.relations (tenant, target_id);
