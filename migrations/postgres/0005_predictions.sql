-- The prediction log (core/src/predictions.rs, behind
-- core/src/ports/predictions.rs): one row per answer of /predict, written
-- in batches by the api; mirrors migrations/sqlite. Request ids are
-- UUIDv7, so their order is time order and the listing's cursor; `at` is
-- in microseconds. Only the api writes it, and only appends
-- (ops/postgres-roles.sql).

CREATE TABLE prediction_logs (
    request_id UUID PRIMARY KEY,
    at         BIGINT NOT NULL,
    model      TEXT NOT NULL,
    version    BIGINT NOT NULL,
    variant    TEXT NOT NULL,
    entity_id  TEXT,
    body       JSONB NOT NULL
);
CREATE INDEX prediction_logs_model ON prediction_logs (model, request_id);
CREATE INDEX prediction_logs_entity ON prediction_logs (entity_id, request_id)
    WHERE entity_id IS NOT NULL;
CREATE INDEX prediction_logs_at ON prediction_logs (at);

-- What really happened, reported later (POST /feedback): at most one
-- outcome per logged prediction, never replaced. Model, version and
-- variant are the prediction's, copied for counting.
CREATE TABLE prediction_outcomes (
    request_id  UUID PRIMARY KEY REFERENCES prediction_logs (request_id),
    model       TEXT NOT NULL,
    version     BIGINT NOT NULL,
    variant     TEXT NOT NULL,
    reported_at BIGINT NOT NULL,
    body        JSONB NOT NULL
);
CREATE INDEX prediction_outcomes_model ON prediction_outcomes (model, request_id);
