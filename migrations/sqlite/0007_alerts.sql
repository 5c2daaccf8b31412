-- Alerts (core/src/lifecycle/alert.rs) and each served version's latest
-- drift scores (core/src/monitoring.rs). An alert's body is the whole
-- record; `due_at` is its next pending delivery (NULL: nothing left to
-- deliver), so the courier reads only what is due.

CREATE TABLE alerts (
    id      TEXT PRIMARY KEY,
    at      INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    key     TEXT NOT NULL,
    model   TEXT NOT NULL,
    due_at  INTEGER,
    body    TEXT NOT NULL
);
CREATE INDEX alerts_key ON alerts (key, id);
CREATE INDEX alerts_model ON alerts (model, id);
CREATE INDEX alerts_due ON alerts (due_at) WHERE due_at IS NOT NULL;

CREATE TABLE drift_scores (
    model   TEXT NOT NULL,
    version INTEGER NOT NULL,
    at      INTEGER NOT NULL,
    body    TEXT NOT NULL,
    PRIMARY KEY (model, version)
);
