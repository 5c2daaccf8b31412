-- TracSeq ML distributed state (PostgreSQL). Mirrors migrations/sqlite: each
-- table keeps the columns that queries filter, sort or lock on, plus the
-- whole record in `body` (JSONB). Timestamps used in comparisons are epoch
-- milliseconds (BIGINT) so both backends compare the same numbers.
-- Tables are created unqualified: they land in the first schema of the
-- connection's search_path, which is how tests and multi-tenant setups
-- isolate one store from another.

CREATE TABLE jobs (
    id               UUID PRIMARY KEY,
    kind             TEXT NOT NULL,
    experiment_id    UUID,
    trial_number     BIGINT,
    state            TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    lease_expires_at BIGINT,
    deadline_at      BIGINT,
    retry_at         BIGINT,
    created_at       BIGINT NOT NULL,
    version          BIGINT NOT NULL,
    body             JSONB NOT NULL
);
CREATE INDEX jobs_experiment ON jobs (experiment_id, created_at);
CREATE INDEX jobs_state ON jobs (state, created_at);

CREATE TABLE experiments (
    id         UUID PRIMARY KEY,
    name       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    state      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    body       JSONB NOT NULL
);
CREATE INDEX experiments_state ON experiments (state);

-- The primary key is the last line of defence for dense trial numbers;
-- create_trial also locks the experiment row so concurrent creators queue
-- instead of colliding.
CREATE TABLE trials (
    experiment_id UUID NOT NULL REFERENCES experiments (id),
    number        BIGINT NOT NULL,
    state         TEXT NOT NULL,
    job_id        UUID,
    body          JSONB NOT NULL,
    PRIMARY KEY (experiment_id, number)
);

-- (name, version) and job_id are unique so that concurrent registrations
-- resolve in the database, not in the callers.
CREATE TABLE model_versions (
    name       TEXT NOT NULL,
    version    BIGINT NOT NULL,
    job_id     UUID UNIQUE,
    created_at BIGINT NOT NULL,
    body       JSONB NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE datasets (
    id         UUID PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    body       JSONB NOT NULL
);
