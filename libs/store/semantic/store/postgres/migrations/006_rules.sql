-- Guardian rules of nodes (README_vector.md, "Guardian rules"): patterns a Check looks
-- for in a text, unique per (tenant, node, rule id), written with their node (under its
-- lock, in its transaction) or by WriteRules / RemoveRules, and deleted with their node in
-- the delete's transaction. `scope` is a JSON object {"tags_any": [...], "metadata":
-- [{"key": k, "equals" | "contains" | "any_of": v}, ...]} ({} applies everywhere).
--
-- semantic.rule_sets holds one stamp per tenant whose rules were ever written: a new
-- random value in every transaction that changes the tenant's rules, so that a process
-- keeping compiled rules knows, with one key lookup, whether they are still current.

CREATE TABLE IF NOT EXISTS semantic.rules (
    tenant           text        NOT NULL,
    node_id          text        NOT NULL,
    rule_id          text        NOT NULL,
    pattern          text        NOT NULL CHECK (pattern <> ''),
    kind             text        NOT NULL DEFAULT 'literal' CHECK (kind IN ('literal', 'regex')),
    case_insensitive boolean     NOT NULL DEFAULT false,
    scope            jsonb       NOT NULL DEFAULT '{}',
    severity         text        NOT NULL DEFAULT 'warning'
                     CHECK (severity IN ('info', 'warning', 'error', 'critical')),
    action           text        NOT NULL DEFAULT '',
    message          text        NOT NULL DEFAULT '',
    active           boolean     NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, node_id, rule_id)
);

CREATE TABLE IF NOT EXISTS semantic.rule_sets (
    tenant      text        PRIMARY KEY,
    stamp       uuid        NOT NULL DEFAULT gen_random_uuid(),
    changed_at  timestamptz NOT NULL DEFAULT now()
);
