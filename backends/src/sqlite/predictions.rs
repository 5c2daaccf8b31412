//! The prediction log on the embedded SQLite database: a batch is one
//! transaction of prepared inserts; listings are one indexed range scan.

use super::{bodies, body, SqliteStateStore};
use crate::error::Classify;
use crate::predictions::{
    already_logged, check_answered, check_batch, check_outcome, counts_from_rows, counts_sql,
    outcome_exists, prediction_not_found,
};
use async_trait::async_trait;
use sqlx::Row;
use std::sync::LazyLock;
use tracseq_core::ids::RequestId;
use tracseq_core::paging::Page;
use tracseq_core::ports::PredictionLogStore;
use tracseq_core::predictions::{
    Labelled, LiveFilter, Outcome, PredictionFilter, PredictionRecord, VariantCount,
};
use tracseq_core::Result;

#[async_trait]
impl PredictionLogStore for SqliteStateStore {
    async fn append_predictions(&self, records: &[PredictionRecord]) -> Result<()> {
        check_batch(records)?;
        if records.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await.classify()?;
        for r in records {
            let res = sqlx::query(
                "INSERT INTO prediction_logs (request_id, at, model, version, variant, entity_id,
                     deployment_id, shadow_of, failed, latency_us, body)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (request_id) DO NOTHING",
            )
            .bind(r.request_id.to_string())
            .bind(r.at.timestamp_micros())
            .bind(&r.model)
            .bind(i64::from(r.version))
            .bind(&r.variant)
            .bind(r.entity_id.as_deref())
            .bind(r.deployment_id.map(|d| d.to_string()))
            .bind(r.shadow_of.map(|d| d.to_string()))
            .bind(r.error.is_some())
            .bind(i64::try_from(r.latency_us).unwrap_or(i64::MAX))
            .bind(serde_json::to_string(r)?)
            .execute(&mut *tx)
            .await
            .classify()?;
            if res.rows_affected() == 0 {
                // Dropping the transaction rolls the batch back.
                return Err(already_logged(r.request_id));
            }
        }
        tx.commit().await.classify()
    }

    async fn list_predictions(
        &self,
        filter: &PredictionFilter,
        page: &Page,
    ) -> Result<Vec<PredictionRecord>> {
        let rows = sqlx::query(
            "SELECT body FROM prediction_logs
             WHERE (?1 IS NULL OR request_id < ?1) AND (?2 IS NULL OR model = ?2)
               AND (?3 IS NULL OR entity_id = ?3) AND (?4 IS NULL OR at >= ?4)
               AND (?6 = 0 OR (shadow_of IS NULL AND failed = 0))
             ORDER BY request_id DESC LIMIT ?5",
        )
        .bind(page.after.as_deref())
        .bind(filter.model.as_deref())
        .bind(filter.entity_id.as_deref())
        .bind(filter.since.map(|t| t.timestamp_micros()))
        .bind(page.sql_limit())
        .bind(filter.answered_only)
        .fetch_all(&self.reader)
        .await
        .classify()?;
        bodies(&rows)
    }

    async fn get_prediction(&self, id: RequestId) -> Result<PredictionRecord> {
        let row = sqlx::query("SELECT body FROM prediction_logs WHERE request_id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .classify()?;
        row.as_ref()
            .map(body)
            .transpose()?
            .ok_or_else(|| prediction_not_found(id))
    }

    async fn record_outcome(&self, outcome: &Outcome) -> Result<()> {
        let id = outcome.request_id;
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.classify()?;
        let row = sqlx::query("SELECT body FROM prediction_logs WHERE request_id = ?")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .classify()?;
        let prediction: PredictionRecord = row
            .as_ref()
            .map(body)
            .transpose()?
            .ok_or_else(|| prediction_not_found(id))?;
        check_answered(&prediction)?;
        check_outcome(outcome, &prediction)?;
        let res = sqlx::query(
            "INSERT INTO prediction_outcomes (request_id, model, version, variant, reported_at, body)
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (request_id) DO NOTHING",
        )
        .bind(id.to_string())
        .bind(&outcome.model)
        .bind(i64::from(outcome.version))
        .bind(&outcome.variant)
        .bind(outcome.reported_at.timestamp_micros())
        .bind(serde_json::to_string(outcome)?)
        .execute(&mut *tx)
        .await
        .classify()?;
        if res.rows_affected() == 0 {
            return Err(outcome_exists(id));
        }
        tx.commit().await.classify()
    }

    async fn labelled_predictions(&self, filter: &LiveFilter, limit: u32) -> Result<Vec<Labelled>> {
        // The answer itself, and the shadows' copies of it (judged by the
        // same outcome).
        let rows = sqlx::query(
            "SELECT prediction, outcome FROM (
                 SELECT p.body AS prediction, o.body AS outcome, o.request_id AS oid, 0 AS shadow
                 FROM prediction_outcomes o JOIN prediction_logs p ON p.request_id = o.request_id
                 WHERE o.model = ?1 AND (?2 IS NULL OR p.at >= ?2)
                   AND (?3 IS NULL OR p.deployment_id = ?3)
                 UNION ALL
                 SELECT p.body, o.body, o.request_id, 1
                 FROM prediction_outcomes o JOIN prediction_logs p ON p.shadow_of = o.request_id
                 WHERE o.model = ?1 AND (?2 IS NULL OR p.at >= ?2)
                   AND (?3 IS NULL OR p.deployment_id = ?3))
             ORDER BY oid DESC, shadow LIMIT ?4",
        )
        .bind(&filter.model)
        .bind(filter.since.map(|t| t.timestamp_micros()))
        .bind(filter.deployment.map(|d| d.to_string()))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .classify()?;
        rows.iter()
            .map(|r| {
                Ok(Labelled {
                    prediction: serde_json::from_str(r.get::<&str, _>("prediction"))?,
                    outcome: serde_json::from_str(r.get::<&str, _>("outcome"))?,
                })
            })
            .collect()
    }

    async fn prediction_counts(&self, filter: &LiveFilter) -> Result<Vec<VariantCount>> {
        static SQL: LazyLock<String> = LazyLock::new(|| {
            counts_sql(
                "failed",
                "model = ?1 AND (?2 IS NULL OR at >= ?2) AND (?3 IS NULL OR deployment_id = ?3)",
            )
        });
        let rows = sqlx::query(SQL.as_str())
            .bind(&filter.model)
            .bind(filter.since.map(|t| t.timestamp_micros()))
            .bind(filter.deployment.map(|d| d.to_string()))
            .fetch_all(&self.reader)
            .await
            .classify()?;
        counts_from_rows(
            &rows,
            |r, c| r.try_get::<i64, _>(c).classify(),
            |r, c| r.try_get::<String, _>(c).classify(),
        )
    }
}
