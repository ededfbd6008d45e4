-- Feedback on nodes (README_vector.md, "Feedback and confidence"): every report once per
-- (tenant, feedback_id), and per node the counters derived from them. The counters are
-- updated in the report's transaction; an import rebuilds them from the reports. Both
-- outlive a deleted node (a node written again under its id finds its history).

CREATE TABLE IF NOT EXISTS semantic.feedback_events (
    tenant         text             NOT NULL,
    feedback_id    text             NOT NULL,
    node_id        text             NOT NULL,
    success        boolean          NOT NULL,
    minutes_saved  double precision,
    note           text             NOT NULL DEFAULT '',
    reporter       text             NOT NULL DEFAULT '',
    occurred_at    timestamptz      NOT NULL,
    received_at    timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, feedback_id)
);
CREATE INDEX IF NOT EXISTS feedback_events_node_idx
    ON semantic.feedback_events (tenant, node_id, occurred_at);

CREATE TABLE IF NOT EXISTS semantic.node_feedback (
    tenant           text             NOT NULL,
    node_id          text             NOT NULL,
    applied          bigint           NOT NULL DEFAULT 0,
    succeeded        bigint           NOT NULL DEFAULT 0,
    minutes_total    double precision NOT NULL DEFAULT 0,
    minutes_reports  bigint           NOT NULL DEFAULT 0,
    last_applied_at  timestamptz,
    PRIMARY KEY (tenant, node_id)
);
