//! Alerts and drift scores on the embedded SQLite database: one row per
//! alert with its next due delivery indexed, one row per model version's
//! latest drift scores.

use super::{bodies, body, SqliteStateStore};
use crate::alerts::{alert_exists, alert_not_found, cursor};
use crate::error::Classify;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tracseq_core::ids::AlertId;
use tracseq_core::monitoring::{Alert, AlertFilter, DriftScores};
use tracseq_core::paging::Page;
use tracseq_core::ports::AlertStore;
use tracseq_core::Result;

#[async_trait]
impl AlertStore for SqliteStateStore {
    async fn record_alert(&self, a: &Alert) -> Result<()> {
        let res = sqlx::query(
            "INSERT INTO alerts (id, at, kind, key, model, due_at, body)
             VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        )
        .bind(a.id.to_string())
        .bind(a.at.timestamp_micros())
        .bind(a.kind.as_str())
        .bind(&a.key)
        .bind(&a.model)
        .bind(a.due_at().map(|t| t.timestamp_micros()))
        .bind(serde_json::to_string(a)?)
        .execute(&self.writer)
        .await
        .classify()?;
        if res.rows_affected() == 0 {
            return Err(alert_exists(a.id));
        }
        Ok(())
    }

    async fn update_deliveries(&self, a: &Alert) -> Result<()> {
        let res = sqlx::query(
            "UPDATE alerts SET due_at = ?, body = json_set(body, '$.deliveries', json(?))
             WHERE id = ?",
        )
        .bind(a.due_at().map(|t| t.timestamp_micros()))
        .bind(serde_json::to_string(&a.deliveries)?)
        .bind(a.id.to_string())
        .execute(&self.writer)
        .await
        .classify()?;
        if res.rows_affected() == 0 {
            return Err(alert_not_found(a.id));
        }
        Ok(())
    }

    async fn get_alert(&self, id: AlertId) -> Result<Alert> {
        let row = sqlx::query("SELECT body FROM alerts WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .classify()?;
        row.as_ref()
            .map(body)
            .transpose()?
            .ok_or_else(|| alert_not_found(id))
    }

    async fn list_alerts(&self, filter: &AlertFilter, page: &Page) -> Result<Vec<Alert>> {
        let rows = sqlx::query(
            "SELECT body FROM alerts
             WHERE (?1 IS NULL OR id < ?1) AND (?2 IS NULL OR kind = ?2)
               AND (?3 IS NULL OR model = ?3) AND (?4 IS NULL OR at >= ?4)
             ORDER BY id DESC LIMIT ?5",
        )
        .bind(cursor(page)?.map(|id| id.to_string()))
        .bind(filter.kind.map(|k| k.as_str()))
        .bind(filter.model.as_deref())
        .bind(filter.since.map(|t| t.timestamp_micros()))
        .bind(page.sql_limit())
        .fetch_all(&self.reader)
        .await
        .classify()?;
        bodies(&rows)
    }

    async fn last_alert(&self, key: &str) -> Result<Option<Alert>> {
        let row = sqlx::query("SELECT body FROM alerts WHERE key = ? ORDER BY id DESC LIMIT 1")
            .bind(key)
            .fetch_optional(&self.reader)
            .await
            .classify()?;
        row.as_ref().map(body).transpose()
    }

    async fn due_alerts(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Alert>> {
        let rows = sqlx::query(
            "SELECT body FROM alerts WHERE due_at IS NOT NULL AND due_at <= ?
             ORDER BY due_at, id LIMIT ?",
        )
        .bind(now.timestamp_micros())
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .classify()?;
        bodies(&rows)
    }

    async fn put_drift_scores(&self, s: &DriftScores) -> Result<()> {
        sqlx::query(
            "INSERT INTO drift_scores (model, version, at, body) VALUES (?, ?, ?, ?)
             ON CONFLICT (model, version) DO UPDATE SET at = excluded.at, body = excluded.body
             WHERE excluded.at >= drift_scores.at",
        )
        .bind(&s.model)
        .bind(i64::from(s.version))
        .bind(s.at.timestamp_micros())
        .bind(serde_json::to_string(s)?)
        .execute(&self.writer)
        .await
        .classify()?;
        Ok(())
    }

    async fn drift_scores(&self) -> Result<Vec<DriftScores>> {
        let rows = sqlx::query("SELECT body FROM drift_scores ORDER BY model, version")
            .fetch_all(&self.reader)
            .await
            .classify()?;
        bodies(&rows)
    }
}
