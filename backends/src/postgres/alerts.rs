//! Alerts and drift scores on PostgreSQL: one row per alert with its next
//! due delivery indexed, one row per model version's latest drift scores.

use super::*;
use crate::alerts::{alert_exists, alert_not_found, cursor};
use tracseq_core::ids::AlertId;
use tracseq_core::monitoring::{Alert, AlertFilter, DriftScores};
use tracseq_core::paging::Page;
use tracseq_core::ports::AlertStore;

#[async_trait]
impl AlertStore for PostgresStateStore {
    async fn record_alert(&self, a: &Alert) -> Result<()> {
        self.run(|attempt| async move {
            let res = sqlx::query(
                "INSERT INTO alerts (id, at, kind, key, model, due_at, body)
                 VALUES ($1::uuid, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
            )
            .bind(a.id.to_string())
            .bind(a.at.timestamp_micros())
            .bind(a.kind.as_str())
            .bind(&a.key)
            .bind(&a.model)
            .bind(a.due_at().map(|t| t.timestamp_micros()))
            .bind(json(a))
            .execute(&self.pool)
            .await?;
            if res.rows_affected() == 0 {
                // A retry after a commit whose answer was lost finds its own row.
                let stored: Option<Alert> = self
                    .fetch_body(
                        "SELECT body FROM alerts WHERE id = $1::uuid",
                        a.id.to_string(),
                    )
                    .await?;
                if attempt > 0 && stored.as_ref() == Some(a) {
                    return Ok(());
                }
                return Err(alert_exists(a.id).into());
            }
            Ok(())
        })
        .await
    }

    async fn update_deliveries(&self, a: &Alert) -> Result<()> {
        self.run(|_| async move {
            let res = sqlx::query(
                "UPDATE alerts SET due_at = $1, body = jsonb_set(body, '{deliveries}', $2)
                 WHERE id = $3::uuid",
            )
            .bind(a.due_at().map(|t| t.timestamp_micros()))
            .bind(json(&a.deliveries))
            .bind(a.id.to_string())
            .execute(&self.pool)
            .await?;
            if res.rows_affected() == 0 {
                return Err(alert_not_found(a.id).into());
            }
            Ok(())
        })
        .await
    }

    async fn get_alert(&self, id: AlertId) -> Result<Alert> {
        self.run(|_| async move {
            let found: Option<Alert> = self
                .fetch_body(
                    "SELECT body FROM alerts WHERE id = $1::uuid",
                    id.to_string(),
                )
                .await?;
            found.ok_or_else(|| alert_not_found(id).into())
        })
        .await
    }

    async fn list_alerts(&self, filter: &AlertFilter, page: &Page) -> Result<Vec<Alert>> {
        let after = cursor(page)?.map(|id| id.to_string());
        let after = after.as_deref();
        self.run(|_| async move {
            let rows = sqlx::query(
                "SELECT body FROM alerts
                 WHERE ($1::uuid IS NULL OR id < $1::uuid) AND ($2::text IS NULL OR kind = $2)
                   AND ($3::text IS NULL OR model = $3) AND ($4::bigint IS NULL OR at >= $4)
                 ORDER BY id DESC LIMIT $5",
            )
            .bind(after)
            .bind(filter.kind.map(|k| k.as_str()))
            .bind(filter.model.as_deref())
            .bind(filter.since.map(|t| t.timestamp_micros()))
            .bind(page.sql_limit())
            .fetch_all(&self.pool)
            .await?;
            bodies(&rows)
        })
        .await
    }

    async fn last_alert(&self, key: &str) -> Result<Option<Alert>> {
        self.run(|_| async move {
            self.fetch_body(
                "SELECT body FROM alerts WHERE key = $1 ORDER BY id DESC LIMIT 1",
                key.to_string(),
            )
            .await
        })
        .await
    }

    async fn due_alerts(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Alert>> {
        self.run(|_| async move {
            let rows = sqlx::query(
                "SELECT body FROM alerts WHERE due_at IS NOT NULL AND due_at <= $1
                 ORDER BY due_at, id LIMIT $2",
            )
            .bind(now.timestamp_micros())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            bodies(&rows)
        })
        .await
    }

    async fn put_drift_scores(&self, s: &DriftScores) -> Result<()> {
        self.run(|_| async move {
            sqlx::query(
                "INSERT INTO drift_scores (model, version, at, body) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (model, version) DO UPDATE SET at = excluded.at, body = excluded.body
                 WHERE excluded.at >= drift_scores.at",
            )
            .bind(&s.model)
            .bind(i64::from(s.version))
            .bind(s.at.timestamp_micros())
            .bind(json(s))
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn drift_scores(&self) -> Result<Vec<DriftScores>> {
        self.run(|_| async move {
            let rows = sqlx::query("SELECT body FROM drift_scores ORDER BY model, version")
                .fetch_all(&self.pool)
                .await?;
            bodies(&rows)
        })
        .await
    }
}
