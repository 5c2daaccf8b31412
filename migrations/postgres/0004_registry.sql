-- The model lifecycle's records (core/src/registry.rs, core/src/lifecycle/
-- promotion.rs and deployment.rs, behind core/src/ports/registry.rs);
-- mirrors migrations/sqlite.
--
-- A model's slots are its versions' stages (the `stage` column of
-- model_versions, so a version registered later is at 'none' with no extra
-- write) and its aliases with the revision every change is compared and
-- set on (model_slots, one row from the model's first change; no row means
-- revision 0). Writers of one model queue on that row's lock, so exactly
-- one compare-and-set from a revision wins. Aliases are kept as one JSON
-- object in that row rather than a row each: a change replaces the whole
-- set, and no role may delete rows (ops/postgres-roles.sql).

ALTER TABLE model_versions ADD COLUMN stage TEXT NOT NULL DEFAULT 'none'
    CHECK (stage IN ('none', 'staging', 'production', 'archived'));
-- One production version per model, whatever the callers do.
CREATE UNIQUE INDEX model_versions_one_production ON model_versions (name)
    WHERE stage = 'production';

CREATE TABLE model_slots (
    name     TEXT PRIMARY KEY,
    revision BIGINT NOT NULL,
    aliases  JSONB NOT NULL
);

CREATE TABLE promotions (
    id           UUID PRIMARY KEY,
    model        TEXT NOT NULL,
    state        TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    body         JSONB NOT NULL
);
CREATE INDEX promotions_model ON promotions (model, requested_at);
CREATE INDEX promotions_state ON promotions (state, requested_at);

-- `revision` is the compare-and-set key of each record (also in `body`).
CREATE TABLE deployments (
    id         UUID PRIMARY KEY,
    model      TEXT NOT NULL,
    target     TEXT NOT NULL,
    state      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revision   BIGINT NOT NULL,
    body       JSONB NOT NULL
);
CREATE INDEX deployments_model ON deployments (model, created_at);
CREATE INDEX deployments_target_state ON deployments (target, state);

-- Every stage and alias move, `seq` dense per model from 1 (appenders hold
-- the model's model_slots row). Append-only, like the audit log: the
-- trigger makes it the database's rule, and no role is granted UPDATE or
-- DELETE on it.
CREATE TABLE model_history (
    model TEXT NOT NULL,
    seq   BIGINT NOT NULL,
    at    BIGINT NOT NULL,
    body  JSONB NOT NULL,
    PRIMARY KEY (model, seq)
);

CREATE FUNCTION model_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'model_history is append-only';
END;
$$;
CREATE TRIGGER model_history_no_change BEFORE UPDATE OR DELETE OR TRUNCATE ON model_history
    FOR EACH STATEMENT EXECUTE FUNCTION model_history_append_only();

-- Tags of a model (version -1: version numbers are never negative) and of
-- its versions, as one JSON object per row; an empty object is no tags.
CREATE TABLE model_tags (
    name    TEXT NOT NULL,
    version BIGINT NOT NULL,
    body    JSONB NOT NULL,
    PRIMARY KEY (name, version)
);
