-- The precision of a space's HNSW index (README_vector.md, "A million vectors"): 'float32'
-- indexes the vector column itself; 'half' indexes the expression embedding::halfvec(dim)
-- (half the index size; the column, and so every reported score, stays full precision).
-- Chosen when a space is created (SEMANTIC_VECTOR_INDEX_PRECISION) and fixed for its life:
-- existing spaces keep 'float32'; a new precision means building a new space.

ALTER TABLE semantic.embedding_spaces
    ADD COLUMN IF NOT EXISTS index_precision text NOT NULL DEFAULT 'float32';

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'embedding_spaces_index_precision_check'
          AND conrelid = 'semantic.embedding_spaces'::regclass
    ) THEN
        ALTER TABLE semantic.embedding_spaces
            ADD CONSTRAINT embedding_spaces_index_precision_check
            CHECK (index_precision IN ('float32', 'half'));
    END IF;
END;
$$;
