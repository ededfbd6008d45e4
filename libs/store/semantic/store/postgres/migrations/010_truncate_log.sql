-- A TRUNCATE of semantic.nodes or of a vector table fires no row trigger, so the change
-- log (004) would never name the rows it removed, and each search replica's local index
-- would keep serving them during an outage. A statement trigger logs one row with an
-- empty node id (no node has one): a follower that reads it rebuilds from a snapshot.
-- TG_ARGV[0]: the space id of a vector table; none for semantic.nodes.

CREATE OR REPLACE FUNCTION semantic.log_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO semantic.node_changes (tenant, node_id, space_id)
    VALUES ('', '', TG_ARGV[0]::integer);
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER nodes_truncated
    AFTER TRUNCATE ON semantic.nodes
    FOR EACH STATEMENT EXECUTE FUNCTION semantic.log_truncate();

-- The vector tables that exist already (later ones get theirs with their DDL).
DO $$
DECLARE
    space record;
BEGIN
    FOR space IN SELECT id FROM semantic.embedding_spaces LOOP
        IF to_regclass(format('semantic.vectors_%s', space.id)) IS NOT NULL THEN
            EXECUTE format(
                'CREATE OR REPLACE TRIGGER vectors_%1$s_truncated'
                ' AFTER TRUNCATE ON semantic.vectors_%1$s'
                ' FOR EACH STATEMENT EXECUTE FUNCTION semantic.log_truncate(%1$s)',
                space.id);
        END IF;
    END LOOP;
END;
$$;
