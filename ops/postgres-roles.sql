-- Least-privilege PostgreSQL roles for a distributed TracSeq ML platform.
--
-- Each process reaches the database with its own role:
--   tracseq_api        the HTTP api: every domain table, the registry's
--                      records, the API tokens, and the audit log, the
--                      prediction log and its outcomes (read and append
--                      only);
--   tracseq_scheduler  jobs, experiments, trials, models, workers and the
--                      registry's records; reads the prediction log and
--                      its outcomes; raises and delivers alerts and keeps
--                      drift scores (the api reads both); appends to the
--                      audit log (automatic rollbacks); no tokens;
--   tracseq_worker     reads what a job needs; writes only jobs, trials, new
--                      model versions (never their stage) and its own worker
--                      row; nothing of the registry's records, no tokens, no
--                      audit log, no prediction log.
-- The registry's records are stages' revisions and aliases (model_slots),
-- promotion requests, deployments, tags and the model history; a deploy job
-- reports its result like any job and the scheduler moves the deployment.
-- No role may UPDATE or DELETE the audit log or the model history, nor
-- DELETE anything else: the platform never deletes rows. Schema changes
-- stay with the owner that runs `tracseq-ml migrate` (the tables' owner),
-- which no process needs at run time.
--
-- Run it as that owner after `tracseq-ml migrate`, with the platform's
-- schema as the search path, and again after each upgrade's migrate (new
-- tables get their grants then):
--   PGOPTIONS='-c search_path=tracseq' psql "$OWNER_URL" -v ON_ERROR_STOP=1 -f ops/postgres-roles.sql
-- then give each role its password (roles are created without one):
--   ALTER ROLE tracseq_worker PASSWORD '...';
-- and put the matching URL in each process's DATABASE_URL.
-- Re-running is safe. backends/src/conformance/postgres.rs runs this file
-- and checks that the worker's role cannot read tokens, write the audit log
-- or touch the registry's records.

DO $roles$
DECLARE
    s text := current_schema();
    domain text[] := ARRAY['jobs', 'experiments', 'trials', 'model_versions', 'datasets', 'workers'];
    registry text[] := ARRAY['model_slots', 'promotions', 'deployments', 'model_tags'];
    t text;
BEGIN
    IF s IS NULL THEN
        RAISE EXCEPTION 'no schema on the search path: set it to the platform''s schema';
    END IF;
    -- drift_scores is the newest migration's table.
    IF to_regclass(quote_ident(s) || '.drift_scores') IS NULL THEN
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
    FOREACH t IN ARRAY ARRAY['jobs', 'trials', 'workers'] LOOP
        EXECUTE format('GRANT INSERT, UPDATE ON %I.%I TO tracseq_worker', s, t);
    END LOOP;
    -- A worker registers the versions it trains but never moves a stage:
    -- what it inserts starts at the default stage ('none'), and it updates
    -- no version (a stage it could write would skip the approval).
    EXECUTE format('GRANT INSERT (name, version, job_id, created_at, body) ON %I.model_versions TO tracseq_worker', s);

    FOREACH t IN ARRAY registry LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE ON %I.%I TO tracseq_api, tracseq_scheduler', s, t);
    END LOOP;
    EXECUTE format('GRANT SELECT, INSERT ON %I.model_history TO tracseq_api, tracseq_scheduler', s);

    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON %I.api_tokens TO tracseq_api', s);
    EXECUTE format('GRANT SELECT, INSERT ON %I.audit_log TO tracseq_api', s);
    -- The scheduler records what it does on nobody's request (a canary's
    -- automatic rollback) in the same chain.
    EXECUTE format('GRANT SELECT, INSERT ON %I.audit_log TO tracseq_scheduler', s);
    -- The api appends; the scheduler reads (drift) and deletes what is past
    -- serving.log_retention_days. Nobody updates.
    FOREACH t IN ARRAY ARRAY['prediction_logs', 'prediction_outcomes'] LOOP
        EXECUTE format('GRANT SELECT, INSERT ON %I.%I TO tracseq_api', s, t);
        EXECUTE format('GRANT SELECT, DELETE ON %I.%I TO tracseq_scheduler', s, t);
    END LOOP;
    -- The scheduler's monitor raises and delivers alerts and keeps drift
    -- scores; the api lists them (GET /alerts, /metrics).
    FOREACH t IN ARRAY ARRAY['alerts', 'drift_scores'] LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE ON %I.%I TO tracseq_scheduler', s, t);
        EXECUTE format('GRANT SELECT ON %I.%I TO tracseq_api', s, t);
    END LOOP;
END
$roles$;
