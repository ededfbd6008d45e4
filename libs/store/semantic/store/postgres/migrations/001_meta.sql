-- Installation facts every service can read (schema version is in schema_migrations).
CREATE TABLE IF NOT EXISTS semantic.meta (
    key         text PRIMARY KEY,
    value       jsonb       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO semantic.meta (key, value)
VALUES ('installation', jsonb_build_object('id', gen_random_uuid(), 'created_at', now()))
ON CONFLICT (key) DO NOTHING;
