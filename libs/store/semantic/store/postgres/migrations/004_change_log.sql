-- The change log each search replica's local vector index follows (degraded reads while
-- PostgreSQL is away; README_vector.md, "Reads during a PostgreSQL outage").
--
-- A trigger on semantic.nodes and one on every vector table (semantic.vectors_<id>, added
-- by the space DDL of the services) append the key of each node written or deleted, by any
-- process: search replicas, the indexer, maintenance. `seq` orders the log (a bigint from a
-- sequence); `xid` is the writing transaction, so that a reader can re-read the rows of
-- transactions still open at its previous read (a sequence value is taken before commit:
-- a smaller one may become visible after a larger one). `space_id` is NULL for a node
-- change and the space of a vector change. Rows older than a day are pruned by readers.

CREATE SEQUENCE IF NOT EXISTS semantic.change_seq;

CREATE TABLE IF NOT EXISTS semantic.node_changes (
    seq         bigint      PRIMARY KEY DEFAULT nextval('semantic.change_seq'),
    xid         xid8        NOT NULL DEFAULT pg_current_xact_id(),
    tenant      text        NOT NULL,
    node_id     text        NOT NULL,
    space_id    integer,
    changed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS node_changes_xid_idx ON semantic.node_changes (xid);
CREATE INDEX IF NOT EXISTS node_changes_changed_at_idx ON semantic.node_changes (changed_at);

CREATE OR REPLACE FUNCTION semantic.log_node_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO semantic.node_changes (tenant, node_id) VALUES (OLD.tenant, OLD.id);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND (OLD.tenant, OLD.id) IS DISTINCT FROM (NEW.tenant, NEW.id)) THEN
        INSERT INTO semantic.node_changes (tenant, node_id) VALUES (NEW.tenant, NEW.id);
    END IF;
    RETURN NULL;
END;
$$;

-- TG_ARGV[0]: the space id of the vector table the trigger is on.
CREATE OR REPLACE FUNCTION semantic.log_vector_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO semantic.node_changes (tenant, node_id, space_id)
        VALUES (OLD.tenant, OLD.node_id, TG_ARGV[0]::integer);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND (OLD.tenant, OLD.node_id) IS DISTINCT FROM (NEW.tenant, NEW.node_id)) THEN
        INSERT INTO semantic.node_changes (tenant, node_id, space_id)
        VALUES (NEW.tenant, NEW.node_id, TG_ARGV[0]::integer);
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER nodes_changes
    AFTER INSERT OR DELETE OR UPDATE OF tenant, id, slug, content_type, title, tags, version,
        updated_at ON semantic.nodes
    FOR EACH ROW EXECUTE FUNCTION semantic.log_node_change();

-- The vector tables that exist already (later ones get theirs with their DDL).
DO $$
DECLARE
    space record;
BEGIN
    FOR space IN SELECT id FROM semantic.embedding_spaces LOOP
        IF to_regclass(format('semantic.vectors_%s', space.id)) IS NOT NULL THEN
            EXECUTE format(
                'CREATE OR REPLACE TRIGGER vectors_%1$s_changes'
                ' AFTER INSERT OR UPDATE OR DELETE ON semantic.vectors_%1$s'
                ' FOR EACH ROW EXECUTE FUNCTION semantic.log_vector_change(%1$s)',
                space.id);
        END IF;
    END LOOP;
END;
$$;
