use crate::ids::AlertId;
use crate::monitoring::{Alert, AlertFilter, DriftScores};
use crate::paging::Page;
use crate::Result;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// Alerts and drift scores (see [`crate::monitoring`]). Alerts are listed
/// newest first by id (UUIDv7, so by time), the cursor being the last id
/// of the previous page; only their deliveries ever change.
#[async_trait]
pub trait AlertStore: Send + Sync {
    /// Records a new alert. `Conflict` when its id is already recorded.
    async fn record_alert(&self, alert: &Alert) -> Result<()>;
    /// Stores an alert's deliveries as they are in `alert` (nothing else of
    /// a recorded alert changes). `NotFound` naming the id when unknown.
    async fn update_deliveries(&self, alert: &Alert) -> Result<()>;
    /// One alert; `NotFound` naming the id.
    async fn get_alert(&self, id: AlertId) -> Result<Alert>;
    /// One page of the alerts the filter matches, newest first.
    async fn list_alerts(&self, filter: &AlertFilter, page: &Page) -> Result<Vec<Alert>>;
    /// The newest alert raised with this key (the cooldown's reference).
    async fn last_alert(&self, key: &str) -> Result<Option<Alert>>;
    /// Alerts with a delivery due at `now`, the longest due first, at most
    /// `limit`.
    async fn due_alerts(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Alert>>;
    /// Replaces a model version's drift scores with newer ones (older ones
    /// than those stored are ignored).
    async fn put_drift_scores(&self, scores: &DriftScores) -> Result<()>;
    /// Every model version's latest drift scores, by model then version.
    async fn drift_scores(&self) -> Result<Vec<DriftScores>>;
}
