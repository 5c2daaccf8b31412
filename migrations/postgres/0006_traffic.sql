-- Traffic policies (core/src/lifecycle/traffic.rs): each logged record
-- names the deployment whose policy chose its version, the answer a
-- shadow's copy shadowed, and whether it failed; latency gets a column of
-- its own so per-variant histograms are counted in SQL. Mirrors
-- migrations/sqlite.

ALTER TABLE prediction_logs ADD COLUMN deployment_id UUID;
ALTER TABLE prediction_logs ADD COLUMN shadow_of UUID;
ALTER TABLE prediction_logs ADD COLUMN failed BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE prediction_logs ADD COLUMN latency_us BIGINT NOT NULL DEFAULT 0;
UPDATE prediction_logs SET latency_us = COALESCE((body->>'latency_us')::bigint, 0);

CREATE INDEX prediction_logs_deployment ON prediction_logs (deployment_id, at)
    WHERE deployment_id IS NOT NULL;
CREATE INDEX prediction_logs_model_at ON prediction_logs (model, at);
CREATE INDEX prediction_logs_shadow_of ON prediction_logs (shadow_of)
    WHERE shadow_of IS NOT NULL;
