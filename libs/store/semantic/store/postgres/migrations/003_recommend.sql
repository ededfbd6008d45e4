-- Recommendations: the interaction log, per-user journeys, per-node engagement and
-- archetype priors. Everything here is derived from user events (the log is the source
-- of truth for the rest), so it can be rebuilt by replaying semantic.user_events.

-- Every user event once (event_id is the idempotency key).
CREATE TABLE IF NOT EXISTS semantic.user_events (
    tenant       text        NOT NULL,
    event_id     text        NOT NULL,
    user_id      text        NOT NULL,
    node_id      text        NOT NULL,
    action       smallint    NOT NULL,
    weight       double precision,
    occurred_at  timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    session_id   text,
    archetype    text,
    source       text,
    context      jsonb,
    PRIMARY KEY (tenant, event_id)
);
CREATE INDEX IF NOT EXISTS user_events_user_idx
    ON semantic.user_events (tenant, user_id, occurred_at DESC);
CREATE INDEX IF NOT EXISTS user_events_node_idx ON semantic.user_events (tenant, node_id);

-- One row per user: the journey as a decayed weighted sum of node vectors (in one
-- embedding space) and its decayed total weight, the archetype and counters.
CREATE TABLE IF NOT EXISTS semantic.users (
    tenant            text        NOT NULL,
    user_id           text        NOT NULL,
    archetype         text,
    archetype_source  text        CHECK (archetype_source IN ('given', 'derived')),
    space_id          integer,
    journey_sum       real[],
    journey_weight    double precision NOT NULL DEFAULT 0,
    journey_at        timestamptz,
    events            integer     NOT NULL DEFAULT 0,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, user_id)
);
CREATE INDEX IF NOT EXISTS users_archetype_idx ON semantic.users (tenant, archetype);

-- What a user did with a node: the exclusions (seen, converted, dismissed) and the
-- journey items shown in explanations.
CREATE TABLE IF NOT EXISTS semantic.user_nodes (
    tenant       text        NOT NULL,
    user_id      text        NOT NULL,
    node_id      text        NOT NULL,
    seen         boolean     NOT NULL DEFAULT false,
    converted    boolean     NOT NULL DEFAULT false,
    dismissed    boolean     NOT NULL DEFAULT false,
    strongest    smallint    NOT NULL DEFAULT 0,
    last_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant, user_id, node_id)
);
CREATE INDEX IF NOT EXISTS user_nodes_recent_idx
    ON semantic.user_nodes (tenant, user_id, last_at DESC);

-- Engagement counters per node.
CREATE TABLE IF NOT EXISTS semantic.node_engagement (
    tenant       text        NOT NULL,
    node_id      text        NOT NULL,
    impressions  bigint      NOT NULL DEFAULT 0,
    views        bigint      NOT NULL DEFAULT 0,
    clicks       bigint      NOT NULL DEFAULT 0,
    likes        bigint      NOT NULL DEFAULT 0,
    conversions  bigint      NOT NULL DEFAULT 0,
    dismissals   bigint      NOT NULL DEFAULT 0,
    popularity   double precision NOT NULL DEFAULT 0,
    last_at      timestamptz,
    PRIMARY KEY (tenant, node_id)
);
CREATE INDEX IF NOT EXISTS node_engagement_popular_idx
    ON semantic.node_engagement (tenant, popularity DESC);

-- How users of an archetype engage with a node (sum of positive action weights).
CREATE TABLE IF NOT EXISTS semantic.archetype_engagement (
    tenant     text             NOT NULL,
    archetype  text             NOT NULL,
    node_id    text             NOT NULL,
    score      double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, archetype, node_id)
);
CREATE INDEX IF NOT EXISTS archetype_engagement_top_idx
    ON semantic.archetype_engagement (tenant, archetype, score DESC);

-- Centroids of derived archetypes (k-means over journey vectors) per space.
CREATE TABLE IF NOT EXISTS semantic.archetype_centroids (
    tenant      text        NOT NULL,
    space_id    integer     NOT NULL,
    label       text        NOT NULL,
    centroid    real[]      NOT NULL,
    members     integer     NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, space_id, label)
);
