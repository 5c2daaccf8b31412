use crate::ids::RequestId;
use crate::paging::Page;
use crate::predictions::{
    Labelled, LiveFilter, Outcome, PredictionFilter, PredictionRecord, VariantCount,
};
use crate::Result;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// The prediction log (see [`crate::predictions`]) and the outcomes
/// reported for it: both append-only, listed newest first by request id
/// (UUIDv7, so by time), the cursor being the last request id of the
/// previous page.
#[async_trait]
pub trait PredictionLogStore: Send + Sync {
    /// Appends records, all or none. `Conflict` when a request id is
    /// already logged (nothing of the batch is stored then).
    async fn append_predictions(&self, records: &[PredictionRecord]) -> Result<()>;
    /// One page of the records the filter matches, newest first.
    async fn list_predictions(
        &self,
        filter: &PredictionFilter,
        page: &Page,
    ) -> Result<Vec<PredictionRecord>>;
    /// One logged prediction; `NotFound` naming the request id.
    async fn get_prediction(&self, id: RequestId) -> Result<PredictionRecord>;
    /// Stores the outcome of a logged prediction. `NotFound` when the
    /// prediction is not logged, `Conflict` when it already has one
    /// (outcomes are never replaced).
    async fn record_outcome(&self, outcome: &Outcome) -> Result<()>;
    /// The predictions the filter matches that have an outcome, newest
    /// outcome first, at most `limit`. A shadow's copy is paired with the
    /// outcome of the answer it shadowed.
    async fn labelled_predictions(&self, filter: &LiveFilter, limit: u32) -> Result<Vec<Labelled>>;
    /// How many predictions each version and variant answered among those
    /// the filter matches, with failures and latency histograms, by
    /// version then variant.
    async fn prediction_counts(&self, filter: &LiveFilter) -> Result<Vec<VariantCount>>;
    /// Deletes at most `limit` of the predictions logged before `before`,
    /// oldest first, with their outcomes; returns how many predictions went.
    /// Retention calls it until fewer than `limit` go, so no one statement
    /// holds the log for long.
    async fn prune_predictions(&self, before: DateTime<Utc>, limit: u32) -> Result<u64>;
}
