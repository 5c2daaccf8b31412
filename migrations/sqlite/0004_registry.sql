-- The model lifecycle's records (core/src/registry.rs, core/src/lifecycle/
-- promotion.rs and deployment.rs, behind core/src/ports/registry.rs).
--
-- A model's slots are its versions' stages (the `stage` column of
-- model_versions, so a version registered later is at 'none' with no extra
-- write) and its aliases with the revision every change is compared and
-- set on (model_slots, one row from the model's first change; no row means
-- revision 0). Aliases are kept as one JSON object in that row rather than
-- a row each: a change replaces the whole set, and the platform never
-- deletes rows.

ALTER TABLE model_versions ADD COLUMN stage TEXT NOT NULL DEFAULT 'none'
    CHECK (stage IN ('none', 'staging', 'production', 'archived'));
-- One production version per model, whatever the callers do.
CREATE UNIQUE INDEX model_versions_one_production ON model_versions (name)
    WHERE stage = 'production';

CREATE TABLE model_slots (
    name     TEXT PRIMARY KEY,
    revision INTEGER NOT NULL,
    aliases  TEXT NOT NULL
);

CREATE TABLE promotions (
    id           TEXT PRIMARY KEY,
    model        TEXT NOT NULL,
    state        TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    body         TEXT NOT NULL
);
CREATE INDEX promotions_model ON promotions (model, requested_at);
CREATE INDEX promotions_state ON promotions (state, requested_at);

-- `revision` is the compare-and-set key of each record (also in `body`).
CREATE TABLE deployments (
    id         TEXT PRIMARY KEY,
    model      TEXT NOT NULL,
    target     TEXT NOT NULL,
    state      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revision   INTEGER NOT NULL,
    body       TEXT NOT NULL
);
CREATE INDEX deployments_model ON deployments (model, created_at);
CREATE INDEX deployments_target_state ON deployments (target, state);

-- Every stage and alias move, `seq` dense per model from 1. Append-only,
-- like the audit log: the triggers make it the database's rule.
CREATE TABLE model_history (
    model TEXT NOT NULL,
    seq   INTEGER NOT NULL,
    at    INTEGER NOT NULL,
    body  TEXT NOT NULL,
    PRIMARY KEY (model, seq)
);
CREATE TRIGGER model_history_no_update BEFORE UPDATE ON model_history
BEGIN
    SELECT RAISE(ABORT, 'model_history is append-only');
END;
CREATE TRIGGER model_history_no_delete BEFORE DELETE ON model_history
BEGIN
    SELECT RAISE(ABORT, 'model_history is append-only');
END;

-- Tags of a model (version -1: version numbers are never negative) and of
-- its versions, as one JSON object per row; an empty object is no tags.
CREATE TABLE model_tags (
    name    TEXT NOT NULL,
    version INTEGER NOT NULL,
    body    TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
