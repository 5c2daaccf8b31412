-- The worker fleet: each worker upserts its row on every heartbeat (its
-- capacity, live GPU figures, running jobs and reservations in `body`).
-- Liveness is judged from last_heartbeat_at by the reader, so a worker that
-- died without a word shows as dead once its heartbeats stop.
CREATE TABLE workers (
    id                TEXT PRIMARY KEY,
    resource_class    TEXT NOT NULL,
    last_heartbeat_at BIGINT NOT NULL,
    body              JSONB NOT NULL
);
