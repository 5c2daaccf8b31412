//! The prediction log's writer: `/predict` hands each record to a bounded
//! queue and answers at once; one task per api process writes the queue to
//! the store in batches.
//!
//! Serving never waits on the log. When the queue is full (the store is
//! slow or down) a new record is dropped and counted rather than making
//! the caller wait; a failed write is retried a few times, then its batch
//! is dropped and counted. A clean shutdown writes what is queued before
//! the process exits ([`PredictionLog::close`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracseq_core::config::ServingConfig;
use tracseq_core::ports::PredictionLogStore;
use tracseq_core::predictions::PredictionRecord;

/// Attempts at one batch before it is dropped, and the wait before the
/// second (doubled for each further one).
const WRITE_ATTEMPTS: u32 = 4;
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// How long [`PredictionLog::close`] waits for the last writes.
const CLOSE_WAIT: Duration = Duration::from_secs(15);

pub struct PredictionLog {
    enabled: bool,
    capacity: usize,
    batch: usize,
    flush: Duration,
    tx: mpsc::Sender<PredictionRecord>,
    /// Taken by the writer task when it starts.
    rx: Mutex<Option<mpsc::Receiver<PredictionRecord>>>,
    stop: watch::Sender<bool>,
    writer: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<Counters>,
    /// Rung when a whole batch is queued, so the writer need not wait out
    /// `flush`.
    full: Arc<Notify>,
}

#[derive(Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
    batches: AtomicU64,
    write_failures: AtomicU64,
}

/// What the log has done so far in this process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogFigures {
    /// Records waiting to be written.
    pub queued: u64,
    pub written: u64,
    /// Records lost to a full queue or to a write that kept failing.
    pub dropped: u64,
    pub batches: u64,
    pub write_failures: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PredictionLog {
    pub fn new(cfg: &ServingConfig) -> PredictionLog {
        let (tx, rx) = mpsc::channel(cfg.log_queue.max(1));
        PredictionLog {
            enabled: cfg.log,
            capacity: cfg.log_queue.max(1),
            batch: cfg.log_batch.max(1),
            flush: Duration::from_millis(cfg.log_flush_ms),
            tx,
            rx: Mutex::new(Some(rx)),
            stop: watch::channel(false).0,
            writer: Mutex::new(None),
            counters: Arc::default(),
            full: Arc::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Queues a record without waiting; a full queue drops it (counted).
    pub fn record(&self, record: PredictionRecord) {
        if !self.enabled {
            return;
        }
        if self.tx.try_send(record).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        } else if self.capacity - self.tx.capacity() >= self.batch {
            self.full.notify_one();
        }
    }

    /// Starts the writer on the current runtime (once; later calls do
    /// nothing).
    pub fn start(&self, store: Arc<dyn PredictionLogStore>) {
        let Some(rx) = lock(&self.rx).take() else {
            return;
        };
        let writer = Writer {
            store,
            batch: self.batch,
            flush: self.flush,
            counters: self.counters.clone(),
            full: self.full.clone(),
        };
        let handle = tokio::spawn(writer.run(rx, self.stop.subscribe()));
        *lock(&self.writer) = Some(handle);
    }

    /// Writes what is queued and stops the writer; records offered after
    /// this are dropped. Waits at most [`CLOSE_WAIT`].
    pub async fn close(&self) {
        let _ = self.stop.send(true);
        let handle = lock(&self.writer).take();
        if let Some(handle) = handle {
            if tokio::time::timeout(CLOSE_WAIT, handle).await.is_err() {
                tracing::warn!(
                    queued = self.figures().queued,
                    "the prediction log did not finish writing before shutdown"
                );
            }
        }
    }

    pub fn figures(&self) -> LogFigures {
        let c = &self.counters;
        LogFigures {
            queued: (self.capacity - self.tx.capacity()) as u64,
            written: c.written.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            write_failures: c.write_failures.load(Ordering::Relaxed),
        }
    }

    /// Prometheus text for the log's queue and counters.
    pub fn render_metrics(&self, out: &mut String) {
        let f = self.figures();
        out.push_str(&format!(
            "# HELP tracseq_prediction_log_queue_depth Predictions waiting to be written to the prediction log.\n\
             # TYPE tracseq_prediction_log_queue_depth gauge\n\
             tracseq_prediction_log_queue_depth {}\n\
             # HELP tracseq_prediction_log_capacity The most predictions the queue holds before dropping.\n\
             # TYPE tracseq_prediction_log_capacity gauge\n\
             tracseq_prediction_log_capacity {}\n\
             # HELP tracseq_prediction_log_written_total Predictions written to the prediction log.\n\
             # TYPE tracseq_prediction_log_written_total counter\n\
             tracseq_prediction_log_written_total {}\n\
             # HELP tracseq_prediction_log_dropped_total Predictions not logged: the queue was full or the store kept failing.\n\
             # TYPE tracseq_prediction_log_dropped_total counter\n\
             tracseq_prediction_log_dropped_total {}\n\
             # HELP tracseq_prediction_log_write_failures_total Failed writes to the prediction log (each retried, then dropped).\n\
             # TYPE tracseq_prediction_log_write_failures_total counter\n\
             tracseq_prediction_log_write_failures_total {}\n",
            f.queued, self.capacity, f.written, f.dropped, f.write_failures
        ));
    }
}

struct Writer {
    store: Arc<dyn PredictionLogStore>,
    batch: usize,
    flush: Duration,
    counters: Arc<Counters>,
    full: Arc<Notify>,
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<PredictionRecord>, mut stop: watch::Receiver<bool>) {
        let mut batch = Vec::with_capacity(self.batch);
        loop {
            // Wait for the first record of a batch (or the stop).
            let stopping = tokio::select! {
                biased;
                _ = stop.changed() => true,
                n = rx.recv_many(&mut batch, self.batch) => n == 0,
            };
            if !stopping && batch.len() < self.batch {
                // Let the batch fill for at most `flush`, asleep: waiting
                // on the queue itself would wake this task for every
                // record `/predict` sends. `record` rings `full` once a
                // batch is queued.
                let deadline = Instant::now() + self.flush;
                tokio::select! {
                    biased;
                    _ = stop.changed() => {}
                    _ = tokio::time::sleep_until(deadline) => {}
                    _ = self.full.notified() => {}
                }
                while batch.len() < self.batch {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
            }
            if *stop.borrow() || stopping {
                // Close: write everything queued, batch by batch.
                rx.close();
                loop {
                    while batch.len() < self.batch {
                        match rx.try_recv() {
                            Ok(r) => batch.push(r),
                            Err(_) => break,
                        }
                    }
                    if batch.is_empty() {
                        return;
                    }
                    self.write(&mut batch).await;
                }
            }
            self.write(&mut batch).await;
        }
    }

    /// Writes and empties `batch`, retrying a failed write; a batch that
    /// keeps failing is dropped and counted.
    async fn write(&self, batch: &mut Vec<PredictionRecord>) {
        if batch.is_empty() {
            return;
        }
        let mut wait = FIRST_RETRY;
        for attempt in 1..=WRITE_ATTEMPTS {
            match self.store.append_predictions(batch).await {
                Ok(()) => {
                    self.counters
                        .written
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    self.counters.batches.fetch_add(1, Ordering::Relaxed);
                    batch.clear();
                    return;
                }
                Err(e) => {
                    self.counters.write_failures.fetch_add(1, Ordering::Relaxed);
                    let last =
                        attempt == WRITE_ATTEMPTS || matches!(e, tracseq_core::Error::Conflict(_));
                    if last {
                        tracing::warn!(error = %e, records = batch.len(),
                            "prediction log write failed; the batch is dropped");
                        self.counters
                            .dropped
                            .fetch_add(batch.len() as u64, Ordering::Relaxed);
                        batch.clear();
                        return;
                    }
                    tracing::debug!(error = %e, attempt, "prediction log write failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "log_tests.rs"]
mod tests;
