-- TracSeq ML embedded state (SQLite). Each table keeps the columns that
-- queries filter or sort on, plus the whole record as JSON in `body`.
-- Timestamps used in comparisons are epoch milliseconds.

CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    experiment_id    TEXT,
    trial_number     INTEGER,
    state            TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    lease_expires_at INTEGER,
    deadline_at      INTEGER,
    retry_at         INTEGER,
    created_at       INTEGER NOT NULL,
    version          INTEGER NOT NULL,
    body             TEXT NOT NULL
);
CREATE INDEX jobs_experiment ON jobs (experiment_id, created_at);
CREATE INDEX jobs_state ON jobs (state, created_at);

CREATE TABLE experiments (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    state      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    body       TEXT NOT NULL
);
CREATE INDEX experiments_state ON experiments (state);

CREATE TABLE trials (
    experiment_id TEXT NOT NULL REFERENCES experiments (id),
    number        INTEGER NOT NULL,
    state         TEXT NOT NULL,
    job_id        TEXT,
    body          TEXT NOT NULL,
    PRIMARY KEY (experiment_id, number)
);

CREATE TABLE model_versions (
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    job_id     TEXT UNIQUE,
    created_at INTEGER NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE datasets (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    body       TEXT NOT NULL
);
