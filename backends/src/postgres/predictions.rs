//! The prediction log on PostgreSQL: a batch is one `INSERT … SELECT FROM
//! UNNEST` (one round trip whatever its size); listings are one indexed
//! range scan.

use super::*;
use crate::predictions::{
    already_logged, check_answered, check_batch, check_outcome, counts_from_rows, counts_sql,
    outcome_exists, prediction_not_found,
};
use chrono::{DateTime, Utc};
use std::sync::LazyLock;
use tracseq_core::ids::RequestId;
use tracseq_core::paging::Page;
use tracseq_core::ports::PredictionLogStore;
use tracseq_core::predictions::{
    Labelled, LiveFilter, Outcome, PredictionFilter, PredictionRecord, VariantCount,
};

#[async_trait]
impl PredictionLogStore for PostgresStateStore {
    async fn append_predictions(&self, records: &[PredictionRecord]) -> Result<()> {
        check_batch(records)?;
        let Some(first) = records.first() else {
            return Ok(());
        };
        let mut ids = Vec::with_capacity(records.len());
        let mut ats = Vec::with_capacity(records.len());
        let mut models = Vec::with_capacity(records.len());
        let mut versions = Vec::with_capacity(records.len());
        let mut variants = Vec::with_capacity(records.len());
        let mut entities = Vec::with_capacity(records.len());
        let mut bodies = Vec::with_capacity(records.len());
        let mut deployments = Vec::with_capacity(records.len());
        let mut shadows = Vec::with_capacity(records.len());
        let mut failed = Vec::with_capacity(records.len());
        let mut latencies = Vec::with_capacity(records.len());
        for r in records {
            deployments.push(r.deployment_id.map(|d| d.to_string()));
            shadows.push(r.shadow_of.map(|d| d.to_string()));
            failed.push(r.error.is_some());
            latencies.push(i64::try_from(r.latency_us).unwrap_or(i64::MAX));
            ids.push(r.request_id.to_string());
            ats.push(r.at.timestamp_micros());
            models.push(r.model.as_str());
            versions.push(i64::from(r.version));
            variants.push(r.variant.as_str());
            entities.push(r.entity_id.as_deref());
            bodies.push(serde_json::to_string(r)?);
        }
        let (ids, ats, models, versions, variants, entities, bodies) = (
            &ids, &ats, &models, &versions, &variants, &entities, &bodies,
        );
        let (deployments, shadows, failed, latencies) =
            (&deployments, &shadows, &failed, &latencies);
        self.run(|attempt| async move {
            if attempt > 0 {
                // An earlier attempt may have committed before its
                // connection died; a batch is stored whole or not at all.
                let done: Option<i32> =
                    sqlx::query_scalar("SELECT 1 FROM prediction_logs WHERE request_id = $1::uuid")
                        .bind(first.request_id.to_string())
                        .fetch_optional(&self.pool)
                        .await?;
                if done.is_some() {
                    return Ok(());
                }
            }
            let taken: Option<String> = sqlx::query_scalar(
                "SELECT request_id::text FROM prediction_logs
                 WHERE request_id = ANY($1::text[]::uuid[]) LIMIT 1",
            )
            .bind(ids)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(id) = taken {
                let id = id.parse().unwrap_or(first.request_id);
                return Err(already_logged(id).into());
            }
            // One statement: the batch is stored whole or not at all (a
            // writer racing on one id fails it with a unique violation).
            sqlx::query(
                "INSERT INTO prediction_logs (request_id, at, model, version, variant, entity_id, body,
                     deployment_id, shadow_of, failed, latency_us)
                 SELECT * FROM UNNEST($1::text[]::uuid[], $2::bigint[], $3::text[], $4::bigint[],
                                      $5::text[], $6::text[], $7::text[]::jsonb[],
                                      $8::text[]::uuid[], $9::text[]::uuid[], $10::bool[],
                                      $11::bigint[])",
            )
            .bind(ids)
            .bind(ats)
            .bind(models)
            .bind(versions)
            .bind(variants)
            .bind(entities)
            .bind(bodies)
            .bind(deployments)
            .bind(shadows)
            .bind(failed)
            .bind(latencies)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn list_predictions(
        &self,
        filter: &PredictionFilter,
        page: &Page,
    ) -> Result<Vec<PredictionRecord>> {
        self.run(|_| async move {
            let rows = sqlx::query(
                "SELECT body FROM prediction_logs
                 WHERE ($1::uuid IS NULL OR request_id < $1::uuid) AND ($2::text IS NULL OR model = $2)
                   AND ($3::text IS NULL OR entity_id = $3) AND ($4::bigint IS NULL OR at >= $4)
                   AND (NOT $6 OR (shadow_of IS NULL AND NOT failed))
                 ORDER BY request_id DESC LIMIT $5",
            )
            .bind(page.after.as_deref())
            .bind(filter.model.as_deref())
            .bind(filter.entity_id.as_deref())
            .bind(filter.since.map(|t| t.timestamp_micros()))
            .bind(page.sql_limit())
            .bind(filter.answered_only)
            .fetch_all(&self.pool)
            .await?;
            bodies(&rows)
        })
        .await
    }

    async fn get_prediction(&self, id: RequestId) -> Result<PredictionRecord> {
        self.run(|_| async move {
            let found: Option<PredictionRecord> = self
                .fetch_body(
                    "SELECT body FROM prediction_logs WHERE request_id = $1::uuid",
                    id.to_string(),
                )
                .await?;
            found.ok_or_else(|| prediction_not_found(id).into())
        })
        .await
    }

    async fn record_outcome(&self, outcome: &Outcome) -> Result<()> {
        let id = outcome.request_id;
        self.run(|attempt| async move {
            let mut tx = self.pool.begin().await?;
            // The prediction's row lock orders two reports of one outcome.
            let row = sqlx::query(
                "SELECT body FROM prediction_logs WHERE request_id = $1::uuid FOR SHARE",
            )
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
            let prediction: PredictionRecord = match row {
                Some(r) => body(&r)?,
                None => return Err(prediction_not_found(id).into()),
            };
            check_answered(&prediction)?;
            check_outcome(outcome, &prediction)?;
            let res = sqlx::query(
                "INSERT INTO prediction_outcomes (request_id, model, version, variant, reported_at, body)
                 VALUES ($1::uuid, $2, $3, $4, $5, $6) ON CONFLICT (request_id) DO NOTHING",
            )
            .bind(id.to_string())
            .bind(&outcome.model)
            .bind(i64::from(outcome.version))
            .bind(&outcome.variant)
            .bind(outcome.reported_at.timestamp_micros())
            .bind(json(outcome))
            .execute(&mut *tx)
            .await?;
            if res.rows_affected() == 0 {
                // A retry after a commit whose answer was lost finds its own row.
                let stored: Option<Outcome> = sqlx::query(
                    "SELECT body FROM prediction_outcomes WHERE request_id = $1::uuid",
                )
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?
                .as_ref()
                .map(body)
                .transpose()?;
                if attempt > 0 && stored.as_ref() == Some(outcome) {
                    return Ok(());
                }
                return Err(outcome_exists(id).into());
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn labelled_predictions(&self, filter: &LiveFilter, limit: u32) -> Result<Vec<Labelled>> {
        self.run(|_| async move {
            // The answer itself, and the shadows' copies of it (judged by
            // the same outcome).
            let rows = sqlx::query(
                "SELECT prediction, outcome FROM (
                     SELECT p.body AS prediction, o.body AS outcome, o.request_id AS oid, 0 AS shadow
                     FROM prediction_outcomes o JOIN prediction_logs p ON p.request_id = o.request_id
                     WHERE o.model = $1 AND ($2::bigint IS NULL OR p.at >= $2)
                       AND ($3::uuid IS NULL OR p.deployment_id = $3::uuid)
                     UNION ALL
                     SELECT p.body, o.body, o.request_id, 1
                     FROM prediction_outcomes o JOIN prediction_logs p ON p.shadow_of = o.request_id
                     WHERE o.model = $1 AND ($2::bigint IS NULL OR p.at >= $2)
                       AND ($3::uuid IS NULL OR p.deployment_id = $3::uuid)) both_kinds
                 ORDER BY oid DESC, shadow LIMIT $4",
            )
            .bind(&filter.model)
            .bind(filter.since.map(|t| t.timestamp_micros()))
            .bind(filter.deployment.map(|d| d.to_string()))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let prediction: Json<PredictionRecord> = r.try_get("prediction")?;
                let outcome: Json<Outcome> = r.try_get("outcome")?;
                out.push(Labelled {
                    prediction: prediction.0,
                    outcome: outcome.0,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn prediction_counts(&self, filter: &LiveFilter) -> Result<Vec<VariantCount>> {
        static SQL: LazyLock<String> = LazyLock::new(|| {
            counts_sql(
                "failed",
                "model = $1 AND ($2::bigint IS NULL OR at >= $2)
                   AND ($3::uuid IS NULL OR deployment_id = $3::uuid)",
            )
        });
        let rows = self
            .run(|_| async move {
                Ok(sqlx::query(SQL.as_str())
                    .bind(&filter.model)
                    .bind(filter.since.map(|t| t.timestamp_micros()))
                    .bind(filter.deployment.map(|d| d.to_string()))
                    .fetch_all(&self.pool)
                    .await?)
            })
            .await?;
        counts_from_rows(
            &rows,
            // SUM over integers is a bigint in PostgreSQL, as COUNT is.
            |r, c| r.try_get::<i64, _>(c).map_err(db_error),
            |r, c| r.try_get::<String, _>(c).map_err(db_error),
        )
    }

    async fn prune_predictions(&self, before: DateTime<Utc>, limit: u32) -> Result<u64> {
        // One statement: every part sees the same snapshot, so the outcomes
        // deleted are exactly those of the predictions deleted, and the
        // foreign key is checked once both are gone.
        let res = self
            .run(|_| async move {
                Ok(sqlx::query(
                    "WITH old AS (
                         SELECT request_id FROM prediction_logs WHERE at < $1 ORDER BY at LIMIT $2
                     ), outcomes AS (
                         DELETE FROM prediction_outcomes WHERE request_id IN (SELECT request_id FROM old)
                     )
                     DELETE FROM prediction_logs WHERE request_id IN (SELECT request_id FROM old)",
                )
                .bind(before.timestamp_micros())
                .bind(i64::from(limit))
                .execute(&self.pool)
                .await?)
            })
            .await?;
        Ok(res.rows_affected())
    }
}
