//! The prediction log on the embedded SQLite database: a batch is one
//! transaction of prepared inserts; listings are one indexed range scan.

use super::{bodies, body, SqliteStateStore};
use crate::error::Classify;
use crate::predictions::{
    already_logged, check_answered, check_batch, check_outcome, counts_from_rows, counts_sql,
    outcome_exists, prediction_not_found,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row, Sqlite};
use std::sync::LazyLock;
use tracseq_core::ids::RequestId;
use tracseq_core::paging::Page;
use tracseq_core::ports::PredictionLogStore;
use tracseq_core::predictions::{
    Labelled, LiveFilter, Outcome, PredictionFilter, PredictionRecord, VariantCount,
};
use tracseq_core::Result;

/// Rows in one INSERT statement: 11 parameters each stay far below
/// SQLite's limit of 32,766 per statement, and one statement per few
/// hundred rows instead of one per row is most of the writer's saving.
const ROWS_PER_INSERT: usize = 256;

impl SqliteStateStore {
    /// The conflict of a batch that some earlier write already logged (in
    /// part): the first of its ids the log holds.
    async fn first_logged(&self, chunk: &[PredictionRecord]) -> tracseq_core::Error {
        for r in chunk {
            let found = sqlx::query("SELECT 1 FROM prediction_logs WHERE request_id = ?")
                .bind(r.request_id.to_string())
                .fetch_optional(&self.writer)
                .await
                .classify();
            match found {
                Ok(Some(_)) => return already_logged(r.request_id),
                Ok(None) => {}
                Err(e) => return e,
            }
        }
        already_logged(chunk[0].request_id)
    }
}

#[async_trait]
impl PredictionLogStore for SqliteStateStore {
    async fn append_predictions(&self, records: &[PredictionRecord]) -> Result<()> {
        check_batch(records)?;
        if records.is_empty() {
            return Ok(());
        }
        // Bodies are encoded before the transaction takes the writer.
        let bodies = records
            .iter()
            .map(serde_json::to_string)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut tx = self.writer.begin().await.classify()?;
        for (chunk, bodies) in records
            .chunks(ROWS_PER_INSERT)
            .zip(bodies.chunks(ROWS_PER_INSERT))
        {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO prediction_logs (request_id, at, model, version, variant, entity_id,
                     deployment_id, shadow_of, failed, latency_us, body) ",
            );
            insert.push_values(chunk.iter().zip(bodies), |mut row, (r, body)| {
                row.push_bind(r.request_id.to_string())
                    .push_bind(r.at.timestamp_micros())
                    .push_bind(r.model.as_str())
                    .push_bind(i64::from(r.version))
                    .push_bind(r.variant.as_str())
                    .push_bind(r.entity_id.as_deref())
                    .push_bind(r.deployment_id.map(|d| d.to_string()))
                    .push_bind(r.shadow_of.map(|d| d.to_string()))
                    .push_bind(r.error.is_some())
                    .push_bind(i64::try_from(r.latency_us).unwrap_or(i64::MAX))
                    .push_bind(body.as_str());
            });
            insert.push(" ON CONFLICT (request_id) DO NOTHING");
            let res = insert.build().execute(&mut *tx).await.classify()?;
            if res.rows_affected() < chunk.len() as u64 {
                // Some id was logged before: roll the batch back and name it.
                tx.rollback().await.classify()?;
                return Err(self.first_logged(chunk).await);
            }
        }
        tx.commit().await.classify()
    }

    async fn prune_predictions(&self, before: DateTime<Utc>, limit: u32) -> Result<u64> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.classify()?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT request_id FROM prediction_logs WHERE at < ? ORDER BY at LIMIT ?",
        )
        .bind(before.timestamp_micros())
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .classify()?;
        // Outcomes first: they refer to their predictions.
        for table in ["prediction_outcomes", "prediction_logs"] {
            for chunk in ids.chunks(ROWS_PER_INSERT) {
                let mut delete = QueryBuilder::<Sqlite>::new(format!(
                    "DELETE FROM {table} WHERE request_id IN ("
                ));
                let mut list = delete.separated(", ");
                for id in chunk {
                    list.push_bind(id.as_str());
                }
                delete.push(")");
                delete.build().execute(&mut *tx).await.classify()?;
            }
        }
        tx.commit().await.classify()?;
        Ok(ids.len() as u64)
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
