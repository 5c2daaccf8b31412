use super::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{json, Map};
use std::sync::atomic::AtomicU32;
use tokio::sync::Semaphore;
use tracseq_backends::MemoryStateStore;
use tracseq_core::ids::RequestId;
use tracseq_core::paging::Page;
use tracseq_core::predictions::{
    Labelled, LiveFilter, Outcome, PredictionFilter, VariantCount, PRIMARY,
};
use tracseq_core::{Error, Result};

fn record(i: u64) -> PredictionRecord {
    PredictionRecord {
        request_id: RequestId::new(),
        at: Utc::now(),
        model: "m".into(),
        version: 1,
        variant: PRIMARY.into(),
        entity_id: None,
        features: Map::from_iter([("x".to_string(), json!(i))]).into(),
        output: json!({"value": i}),
        latency_us: 10,
        caller: None,
        deployment_id: None,
        shadow_of: None,
        error: None,
    }
}

fn config(queue: usize, batch: usize) -> ServingConfig {
    ServingConfig {
        log: true,
        log_queue: queue,
        log_batch: batch,
        log_flush_ms: 20,
        ..Default::default()
    }
}

/// A store in front of the memory one that can hold writes back and fail
/// the first few.
#[derive(Default)]
struct Gate {
    inner: MemoryStateStore,
    /// Writes wait for a permit when set.
    hold: Option<Arc<Semaphore>>,
    fail_first: AtomicU32,
    batch_sizes: Mutex<Vec<usize>>,
}

#[async_trait]
impl PredictionLogStore for Gate {
    async fn append_predictions(&self, records: &[PredictionRecord]) -> Result<()> {
        if let Some(hold) = &self.hold {
            hold.acquire().await.unwrap().forget();
        }
        if self
            .fail_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Error::Unavailable("the database is restarting".into()));
        }
        lock(&self.batch_sizes).push(records.len());
        self.inner.append_predictions(records).await
    }

    async fn list_predictions(
        &self,
        filter: &PredictionFilter,
        page: &Page,
    ) -> Result<Vec<PredictionRecord>> {
        self.inner.list_predictions(filter, page).await
    }

    async fn get_prediction(&self, id: RequestId) -> Result<PredictionRecord> {
        self.inner.get_prediction(id).await
    }

    async fn record_outcome(&self, outcome: &Outcome) -> Result<()> {
        self.inner.record_outcome(outcome).await
    }

    async fn labelled_predictions(&self, filter: &LiveFilter, limit: u32) -> Result<Vec<Labelled>> {
        self.inner.labelled_predictions(filter, limit).await
    }

    async fn prediction_counts(&self, filter: &LiveFilter) -> Result<Vec<VariantCount>> {
        self.inner.prediction_counts(filter).await
    }

    async fn prune_predictions(&self, before: DateTime<Utc>, limit: u32) -> Result<u64> {
        self.inner.prune_predictions(before, limit).await
    }
}

async fn stored(store: &Gate) -> usize {
    store
        .list_predictions(&PredictionFilter::default(), &Page::all())
        .await
        .unwrap()
        .len()
}

async fn until_written(log: &PredictionLog, n: u64) {
    for _ in 0..500 {
        if log.figures().written >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not written: {:?}", log.figures());
}

#[tokio::test]
async fn records_are_written_in_batches_of_at_most_the_configured_size() {
    let store = Arc::new(Gate::default());
    let log = PredictionLog::new(&config(1_000, 64));
    log.start(store.clone());
    for i in 0..300 {
        log.record(record(i));
    }
    until_written(&log, 300).await;
    assert_eq!(stored(&store).await, 300);
    let sizes = lock(&store.batch_sizes).clone();
    assert!(sizes.iter().all(|&n| n <= 64), "{sizes:?}");
    assert!(sizes.len() < 300, "records share writes: {sizes:?}");
    let f = log.figures();
    assert_eq!((f.dropped, f.queued, f.write_failures), (0, 0, 0));
    let mut text = String::new();
    log.render_metrics(&mut text);
    for line in [
        "tracseq_prediction_log_written_total 300",
        "tracseq_prediction_log_dropped_total 0",
        "tracseq_prediction_log_queue_depth 0",
        "tracseq_prediction_log_capacity 1000",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_waiting() {
    let hold = Arc::new(Semaphore::new(0));
    let store = Arc::new(Gate {
        hold: Some(hold.clone()),
        ..Default::default()
    });
    let log = PredictionLog::new(&config(10, 5));
    log.start(store.clone());
    // The writer takes up to one batch off the queue and is held there;
    // the queue then fills, and every record past it is dropped at once.
    for i in 0..100 {
        log.record(record(i));
    }
    let f = log.figures();
    assert!(f.dropped >= 100 - 10 - 5, "{f:?}");
    assert!(f.queued <= 10, "{f:?}");
    hold.add_permits(1_000);
    log.close().await;
    let f = log.figures();
    assert_eq!(
        f.written + f.dropped,
        100,
        "each record written or counted: {f:?}"
    );
    assert_eq!(stored(&store).await as u64, f.written);
}

#[tokio::test]
async fn closing_writes_everything_still_queued() {
    let store = Arc::new(Gate::default());
    // A flush interval far longer than the test: only the close writes.
    let log = PredictionLog::new(&ServingConfig {
        log_flush_ms: 60_000,
        ..config(1_000, 400)
    });
    log.start(store.clone());
    for i in 0..250 {
        log.record(record(i));
    }
    log.close().await;
    assert_eq!(stored(&store).await, 250);
    assert_eq!(log.figures().written, 250);
    log.record(record(0));
    assert_eq!(
        log.figures().dropped,
        1,
        "after close, records are counted as dropped"
    );
}

#[tokio::test]
async fn a_failing_write_is_retried_then_its_batch_dropped_and_counted() {
    let store = Arc::new(Gate {
        fail_first: AtomicU32::new(2),
        ..Default::default()
    });
    let log = PredictionLog::new(&config(100, 50));
    log.start(store.clone());
    for i in 0..20 {
        log.record(record(i));
    }
    until_written(&log, 20).await;
    assert_eq!(log.figures().write_failures, 2);
    assert_eq!(log.figures().dropped, 0, "the retry wrote it");

    store.fail_first.store(WRITE_ATTEMPTS, Ordering::SeqCst);
    for i in 0..7 {
        log.record(record(i));
    }
    log.close().await;
    let f = log.figures();
    assert_eq!(f.dropped, 7, "{f:?}");
    assert_eq!(stored(&store).await, 20);
}

#[tokio::test]
async fn a_disabled_log_keeps_nothing_and_drops_nothing() {
    let store = Arc::new(Gate::default());
    let log = PredictionLog::new(&ServingConfig {
        log: false,
        ..config(10, 5)
    });
    log.start(store.clone());
    log.record(record(1));
    log.close().await;
    assert_eq!(stored(&store).await, 0);
    assert_eq!(log.figures(), LogFigures::default());
}
