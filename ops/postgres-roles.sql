-- Least-privilege PostgreSQL roles for a distributed TracSeq ML platform.
--
-- Each process reaches the database with its own role:
--   tracseq_api        the HTTP api: every domain table, the API tokens, and
--                      the audit log (read and append only);
--   tracseq_scheduler  jobs, experiments, trials, models, workers; no tokens,
--                      no audit log;
--   tracseq_worker     reads what a job needs; writes only jobs, trials, model
--                      versions and its own worker row; no tokens, no audit log.
-- No role may UPDATE or DELETE the audit log, nor DELETE anything else: the
-- platform never deletes rows. Schema changes stay with the owner that runs
-- `tracseq-ml migrate` (the tables' owner), which no process needs at run time.
--
-- Run it as that owner after `tracseq-ml migrate`, with the platform's
-- schema as the search path, and again after each upgrade's migrate (new
-- tables get their grants then):
--   PGOPTIONS='-c search_path=tracseq' psql "$OWNER_URL" -v ON_ERROR_STOP=1 -f ops/postgres-roles.sql
-- then give each role its password (roles are created without one):
--   ALTER ROLE tracseq_worker PASSWORD '...';
-- and put the matching URL in each process's DATABASE_URL.
-- Re-running is safe. tests/postgres_roles.rs runs this file and checks that
-- the worker's role cannot read tokens or write the audit log.

DO $roles$
DECLARE
    s text := current_schema();
    domain text[] := ARRAY['jobs', 'experiments', 'trials', 'model_versions', 'datasets', 'workers'];
    t text;
BEGIN
    IF s IS NULL THEN
        RAISE EXCEPTION 'no schema on the search path: set it to the platform''s schema';
    END IF;
    IF to_regclass(quote_ident(s) || '.audit_log') IS NULL THEN
        RAISE EXCEPTION 'schema % is not migrated: run `tracseq-ml migrate` first', s;
    END IF;
    -- Roles are global to the cluster: creating them is serialised so two
    -- runs at once cannot both try.
    PERFORM pg_advisory_xact_lock(hashtext('tracseq-ml roles'));
    FOREACH t IN ARRAY ARRAY['tracseq_api', 'tracseq_scheduler', 'tracseq_worker'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = t) THEN
            EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT', t);
        END IF;
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', s, t);
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM %I', s, t);
        EXECUTE format('GRANT SELECT ON %I._sqlx_migrations TO %I', s, t);
    END LOOP;
    EXECUTE format('REVOKE ALL ON %I.api_tokens, %I.audit_log FROM PUBLIC', s, s);

    FOREACH t IN ARRAY domain LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE ON %I.%I TO tracseq_api, tracseq_scheduler', s, t);
        EXECUTE format('GRANT SELECT ON %I.%I TO tracseq_worker', s, t);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['jobs', 'trials', 'model_versions', 'workers'] LOOP
        EXECUTE format('GRANT INSERT, UPDATE ON %I.%I TO tracseq_worker', s, t);
    END LOOP;

    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON %I.api_tokens TO tracseq_api', s);
    EXECUTE format('GRANT SELECT, INSERT ON %I.audit_log TO tracseq_api', s);
END
$roles$;
