//! Retention of the prediction log: predictions older than
//! `serving.log_retention_days`, with their outcomes, are deleted once an
//! hour (and once at start), in steps of [`STEP`] so that no statement holds
//! the log's table for long while the api keeps appending to it.
//!
//! Drift and live metrics read recent windows only; an outcome reported for
//! a prediction already deleted is refused as not found, like any unknown
//! request id.

use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use tracseq_core::{Platform, Result};

/// How often the log is pruned.
pub const EVERY: Duration = Duration::from_secs(3600);
/// Predictions deleted per statement.
pub const STEP: u32 = 5_000;
/// Steps in one pass at most; what is left waits for the next pass.
const MAX_STEPS: u32 = 400;

/// Deletes the predictions logged more than `days` days before `now`;
/// returns how many went. `days == 0` keeps everything.
pub async fn prune(p: &Platform, days: u32, now: DateTime<Utc>) -> Result<u64> {
    if days == 0 {
        return Ok(0);
    }
    let before = now - chrono::Duration::days(i64::from(days));
    let mut total = 0;
    for _ in 0..MAX_STEPS {
        let n = p.predictions.prune_predictions(before, STEP).await?;
        total += n;
        if n < u64::from(STEP) {
            break;
        }
        // Let the api's writer and the monitor's reads in between steps.
        tokio::task::yield_now().await;
    }
    if total > 0 {
        info!(deleted = total, %before, "prediction log retention");
    }
    Ok(total)
}

/// Prunes at start and every [`EVERY`] until `cancel`.
pub(crate) async fn retention_loop(p: Platform, days: u32, cancel: CancellationToken) {
    if days == 0 {
        return;
    }
    loop {
        if let Err(e) = prune(&p, days, Utc::now()).await {
            warn!(error = %e, "pruning the prediction log failed; retrying at the next pass");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracseq_core::fixtures::t0;
    use tracseq_core::ids::RequestId;
    use tracseq_core::lifecycle::RetryPolicy;
    use tracseq_core::paging::Page;
    use tracseq_core::predictions::{PredictionFilter, PredictionRecord, PRIMARY};

    fn logged(at: DateTime<Utc>) -> PredictionRecord {
        PredictionRecord {
            request_id: RequestId::new(),
            at,
            model: "sq".into(),
            version: 1,
            variant: PRIMARY.into(),
            entity_id: None,
            features: serde_json::Map::new().into(),
            output: serde_json::json!({"value": 1.0}),
            latency_us: 10,
            caller: None,
            deployment_id: None,
            shadow_of: None,
            error: None,
        }
    }

    #[tokio::test]
    async fn predictions_past_the_retention_go_in_steps_and_newer_ones_stay() {
        let p = tracseq_backends::platform::in_memory(RetryPolicy::default());
        let now = t0();
        let old = now - chrono::Duration::days(31);
        let records: Vec<_> = (0..u64::from(STEP) + 7)
            .map(|i| logged(old - chrono::Duration::seconds(i as i64)))
            .chain([logged(now - chrono::Duration::days(29))])
            .collect();
        p.predictions.append_predictions(&records).await.unwrap();

        assert_eq!(prune(&p, 0, now).await.unwrap(), 0, "0 keeps everything");
        assert_eq!(prune(&p, 30, now).await.unwrap(), u64::from(STEP) + 7);
        let left = p
            .predictions
            .list_predictions(&PredictionFilter::default(), &Page::all())
            .await
            .unwrap();
        assert_eq!(left.len(), 1);
        assert!(left[0].at > now - chrono::Duration::days(30));
        assert_eq!(
            prune(&p, 30, now).await.unwrap(),
            0,
            "nothing left to prune"
        );
    }
}
