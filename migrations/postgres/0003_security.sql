-- API tokens and the audit log (see core/src/security); mirrors
-- migrations/sqlite. Tokens are stored only as the SHA-256 of their secret.
-- An unrevoked token's name is unique; a revoked one's may be reused (the
-- audit log records token ids as well as names).
CREATE TABLE api_tokens (
    id         UUID PRIMARY KEY,
    name       TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    body       JSONB NOT NULL
);
CREATE UNIQUE INDEX api_tokens_active_name ON api_tokens (name) WHERE revoked_at IS NULL;

-- Append-only and hash-chained: `seq` is dense, each body carries the hash
-- of the entry before it (appenders serialise on an advisory lock). The
-- body is TEXT, not JSONB, so it is kept byte for byte as it was hashed.
-- `targets` is the targets joined with spaces, padded with one on each
-- side, for LIKE '% id %'. The trigger makes append-only the database's
-- rule; ops/postgres-roles.sql also grants no role UPDATE or DELETE on it.
CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY,
    at         BIGINT NOT NULL,
    actor_id   TEXT,
    actor_name TEXT,
    action     TEXT NOT NULL,
    targets    TEXT NOT NULL,
    request_id TEXT NOT NULL,
    hash       TEXT NOT NULL,
    body       TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
