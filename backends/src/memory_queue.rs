//! In-process `JobQueue` with broker semantics: priorities, prefetch, ack/nack,
//! redelivery of unsettled messages and a dead-letter list.

use async_trait::async_trait;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tracseq_core::ports::{Acker, Delivery, JobQueue, Subscription};
use tracseq_core::types::DispatchMessage;
use tracseq_core::{Error, Result};

#[derive(Clone, Default)]
pub struct MemoryQueue {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    classes: Mutex<HashMap<String, ClassQueue>>,
    dead_letters: Mutex<Vec<DispatchMessage>>,
    /// Woken on publish, settle and close; waiters re-check their condition.
    changed: Notify,
    closed: AtomicBool,
}

#[derive(Default)]
struct ClassQueue {
    ready: BinaryHeap<Entry>,
    seq: u64,
}

#[derive(Clone, Debug)]
struct Entry {
    priority: u8,
    seq: u64,
    msg: DispatchMessage,
    redelivered: bool,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.priority, self.seq) == (o.priority, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    // Max-heap: higher priority first, then first-in first-out.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.priority.cmp(&o.priority).then(o.seq.cmp(&self.seq))
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ClassQueue>> {
        // A panic while holding this lock cannot leave the heap half-updated
        // (every mutation is a single push/pop), so a poisoned lock is usable.
        self.classes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, class: &str, msg: DispatchMessage, redelivered: bool) {
        let mut classes = self.lock();
        let q = classes.entry(class.to_string()).or_default();
        q.seq += 1;
        let seq = q.seq;
        q.ready.push(Entry {
            priority: msg.priority,
            seq,
            msg,
            redelivered,
        });
        drop(classes);
        self.changed.notify_waiters();
    }
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops every subscription (they return `Ok(None)`); used at shutdown.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.changed.notify_waiters();
    }

    /// Messages rejected without requeue.
    pub fn dead_letters(&self) -> Vec<DispatchMessage> {
        self.inner
            .dead_letters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn publish(&self, class: &str, msg: &DispatchMessage) -> Result<()> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(Error::Unavailable("queue is closed".into()));
        }
        self.inner.push(class, msg.clone(), false);
        Ok(())
    }

    async fn subscribe(&self, class: &str, prefetch: u16) -> Result<Box<dyn Subscription>> {
        if prefetch == 0 {
            return Err(Error::Invalid("prefetch must be at least 1".into()));
        }
        Ok(Box::new(MemorySubscription {
            inner: self.inner.clone(),
            class: class.to_string(),
            prefetch: prefetch as usize,
            in_flight: Arc::new(AtomicUsize::new(0)),
        }))
    }

    async fn depth(&self, class: &str) -> Result<u64> {
        Ok(self
            .inner
            .lock()
            .get(class)
            .map_or(0, |q| q.ready.len() as u64))
    }
}

struct MemorySubscription {
    inner: Arc<Inner>,
    class: String,
    prefetch: usize,
    in_flight: Arc<AtomicUsize>,
}

#[async_trait]
impl Subscription for MemorySubscription {
    async fn next(&mut self) -> Result<Option<Delivery>> {
        loop {
            // Register interest before checking, so a publish between the
            // check and the wait is not missed.
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.inner.closed.load(Ordering::SeqCst) {
                return Ok(None);
            }
            if self.in_flight.load(Ordering::SeqCst) < self.prefetch {
                let popped = self
                    .inner
                    .lock()
                    .get_mut(&self.class)
                    .and_then(|q| q.ready.pop());
                if let Some(entry) = popped {
                    self.in_flight.fetch_add(1, Ordering::SeqCst);
                    let acker = MemoryAcker {
                        inner: self.inner.clone(),
                        class: self.class.clone(),
                        entry: Mutex::new(Some(entry.clone())),
                        in_flight: self.in_flight.clone(),
                    };
                    return Ok(Some(Delivery {
                        message: entry.msg,
                        redelivered: entry.redelivered,
                        acker: Box::new(acker),
                    }));
                }
            }
            changed.await;
        }
    }
}

struct MemoryAcker {
    inner: Arc<Inner>,
    class: String,
    entry: Mutex<Option<Entry>>,
    in_flight: Arc<AtomicUsize>,
}

impl MemoryAcker {
    fn settle(&self) -> Result<Entry> {
        let entry = self.entry.lock().unwrap_or_else(|e| e.into_inner()).take();
        let entry = entry.ok_or_else(|| Error::Conflict("delivery already settled".into()))?;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        Ok(entry)
    }
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn ack(&self) -> Result<()> {
        self.settle()?;
        self.inner.changed.notify_waiters();
        Ok(())
    }

    async fn nack(&self, requeue: bool) -> Result<()> {
        let entry = self.settle()?;
        if requeue {
            self.inner.push(&self.class, entry.msg, true);
        } else {
            self.inner
                .dead_letters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(entry.msg);
            self.inner.changed.notify_waiters();
        }
        Ok(())
    }
}

impl Drop for MemoryAcker {
    fn drop(&mut self) {
        // Unsettled at drop = the consumer went away: redeliver, as AMQP does.
        if let Ok(entry) = self.settle() {
            self.inner.push(&self.class, entry.msg, true);
        }
    }
}
