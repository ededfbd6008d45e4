-- A delete that names its node by slug tombstones the slug as well as the node: a later
-- write carrying that slug at the delete's version or older is stale, whatever its id.
-- Without it, an upsert by id carrying the slug, applied after the delete by slug (two
-- consumer loops, two indexer replicas), created the node the delete had removed.
ALTER TABLE semantic.node_tombstones ADD COLUMN IF NOT EXISTS slug text;

CREATE INDEX IF NOT EXISTS node_tombstones_slug_idx
    ON semantic.node_tombstones (tenant, slug) WHERE slug IS NOT NULL;
