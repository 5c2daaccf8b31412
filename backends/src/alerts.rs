//! The [`AlertStore`] port (alerts and drift scores): in memory here,
//! beside [`MemoryStateStore`]; on SQLite and PostgreSQL in
//! `sqlite/alerts.rs` and `postgres/alerts.rs`, which share the messages
//! below.

use crate::memory_state::MemoryStateStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tracseq_core::ids::AlertId;
use tracseq_core::monitoring::{Alert, AlertFilter, DriftScores};
use tracseq_core::paging::Page;
use tracseq_core::ports::AlertStore;
use tracseq_core::{Error, Result};

pub(crate) fn alert_not_found(id: AlertId) -> Error {
    Error::not_found(format!("alert {id}"))
}

pub(crate) fn alert_exists(id: AlertId) -> Error {
    Error::Conflict(format!("alert {id} is already recorded"))
}

/// A page's cursor as an alert id (listings order by it).
pub(crate) fn cursor(page: &Page) -> Result<Option<AlertId>> {
    page.after.as_deref().map(str::parse).transpose()
}

#[async_trait]
impl AlertStore for MemoryStateStore {
    async fn record_alert(&self, alert: &Alert) -> Result<()> {
        let mut g = self.lock();
        if g.alerts.contains_key(&alert.id) {
            return Err(alert_exists(alert.id));
        }
        g.alerts.insert(alert.id, alert.clone());
        Ok(())
    }

    async fn update_deliveries(&self, alert: &Alert) -> Result<()> {
        let mut g = self.lock();
        let stored = g
            .alerts
            .get_mut(&alert.id)
            .ok_or_else(|| alert_not_found(alert.id))?;
        stored.deliveries = alert.deliveries.clone();
        Ok(())
    }

    async fn get_alert(&self, id: AlertId) -> Result<Alert> {
        self.lock()
            .alerts
            .get(&id)
            .cloned()
            .ok_or_else(|| alert_not_found(id))
    }

    async fn list_alerts(&self, filter: &AlertFilter, page: &Page) -> Result<Vec<Alert>> {
        let after = cursor(page)?;
        let g = self.lock();
        let older = g
            .alerts
            .range(..after.unwrap_or(AlertId(uuid::Uuid::max())));
        Ok(older
            .rev()
            .map(|(_, a)| a)
            .filter(|a| after != Some(a.id) && filter.matches(a))
            .take(page.limit as usize)
            .cloned()
            .collect())
    }

    async fn last_alert(&self, key: &str) -> Result<Option<Alert>> {
        let g = self.lock();
        Ok(g.alerts.values().rev().find(|a| a.key == key).cloned())
    }

    async fn due_alerts(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Alert>> {
        let g = self.lock();
        let mut due: Vec<_> = g
            .alerts
            .values()
            .filter_map(|a| a.due_at().filter(|t| *t <= now).map(|t| (t, a)))
            .collect();
        due.sort_by_key(|(t, a)| (*t, a.id));
        Ok(due
            .into_iter()
            .take(limit as usize)
            .map(|(_, a)| a.clone())
            .collect())
    }

    async fn put_drift_scores(&self, scores: &DriftScores) -> Result<()> {
        let mut g = self.lock();
        let key = (scores.model.clone(), scores.version);
        if g.drift.get(&key).is_none_or(|old| old.at <= scores.at) {
            g.drift.insert(key, scores.clone());
        }
        Ok(())
    }

    async fn drift_scores(&self) -> Result<Vec<DriftScores>> {
        Ok(self.lock().drift.values().cloned().collect())
    }
}
