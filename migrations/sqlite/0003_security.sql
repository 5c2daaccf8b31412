-- API tokens and the audit log (see core/src/security). Tokens are stored
-- only as the SHA-256 of their secret. An unrevoked token's name is unique,
-- so `token revoke NAME` is unambiguous; a revoked token's name may be
-- reused (the audit log records token ids as well as names).
CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    body       TEXT NOT NULL
);
CREATE UNIQUE INDEX api_tokens_active_name ON api_tokens (name) WHERE revoked_at IS NULL;

-- Append-only and hash-chained: `seq` is dense (1, 2, 3, ...), each body
-- carries the hash of the entry before it. `targets` is the entry's targets
-- joined with spaces and padded with one on each side, so one target is
-- found with LIKE '% id %'. The triggers make the append-only rule the
-- database's, not only the platform's.
CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    actor_id   TEXT,
    actor_name TEXT,
    action     TEXT NOT NULL,
    targets    TEXT NOT NULL,
    request_id TEXT NOT NULL,
    hash       TEXT NOT NULL,
    body       TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
