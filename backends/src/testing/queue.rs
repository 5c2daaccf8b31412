//! The `JobQueue` conformance suite.

use std::time::Duration;
use tokio::time::timeout;
use tracseq_core::ids::JobId;
use tracseq_core::ports::JobQueue;
use tracseq_core::types::{DispatchMessage, JobKind};

/// A wake-up for a new job at `priority`.
pub fn msg(priority: u8) -> DispatchMessage {
    DispatchMessage {
        job_id: JobId::new(),
        kind: JobKind::Trial,
        priority,
        job: None,
    }
}

/// `class` must be a queue name no other test uses (brokers are shared).
pub async fn job_queue_suite(q: &dyn JobQueue, class: &str) {
    let wait = Duration::from_secs(10);
    let short = Duration::from_millis(300);

    // Publish, receive, ack: gone for good.
    let a = msg(0);
    q.publish(class, &a).await.unwrap();
    let mut sub = q.subscribe(class, 1).await.unwrap();
    let d = timeout(wait, sub.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(d.message, a);
    assert!(!d.redelivered);
    d.ack().await.unwrap();
    assert!(
        timeout(short, sub.next()).await.is_err(),
        "acked message is not redelivered"
    );

    // Nack with requeue: delivered again, marked redelivered.
    let b = msg(0);
    q.publish(class, &b).await.unwrap();
    let d = timeout(wait, sub.next()).await.unwrap().unwrap().unwrap();
    d.nack(true).await.unwrap();
    let d = timeout(wait, sub.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(d.message, b);
    assert!(d.redelivered);
    // Nack without requeue: dropped (dead-lettered).
    d.nack(false).await.unwrap();
    assert!(timeout(short, sub.next()).await.is_err());

    // A batch: every message arrives, in order.
    let batch: Vec<_> = (0..3).map(|_| msg(0)).collect();
    q.publish_batch(class, &batch).await.unwrap();
    for m in &batch {
        let d = timeout(wait, sub.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(&d.message, m);
        d.ack().await.unwrap();
    }
    q.publish_batch(class, &[]).await.unwrap();

    // Prefetch: with one unsettled delivery, the next waits.
    let c1 = msg(0);
    let c2 = msg(0);
    q.publish(class, &c1).await.unwrap();
    q.publish(class, &c2).await.unwrap();
    let d1 = timeout(wait, sub.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(d1.message, c1, "FIFO within a priority");
    assert!(
        timeout(short, sub.next()).await.is_err(),
        "prefetch 1 holds back the second"
    );
    d1.ack().await.unwrap();
    let d2 = timeout(wait, sub.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(d2.message, c2);
    d2.ack().await.unwrap();

    // A consumer that goes away without settling: the message comes back.
    let e = msg(0);
    q.publish(class, &e).await.unwrap();
    let d = timeout(wait, sub.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(d.message, e);
    drop(d);
    drop(sub);
    let mut sub = q.subscribe(class, 4).await.unwrap();
    let d = timeout(wait, sub.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(d.message, e);
    assert!(d.redelivered);
    d.ack().await.unwrap();
    drop(sub);

    // Priorities: published low, high, mid -> delivered high, mid, low.
    let (lo, hi, mid) = (msg(1), msg(9), msg(5));
    for m in [&lo, &hi, &mid] {
        q.publish(class, m).await.unwrap();
    }
    // Let a broker settle all three into the queue before a consumer attaches.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(q.depth(class).await.unwrap(), 3);
    let mut sub = q.subscribe(class, 1).await.unwrap();
    for expected in [&hi, &mid, &lo] {
        let d = timeout(wait, sub.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(&d.message, expected);
        d.ack().await.unwrap();
    }
    assert_eq!(q.depth(class).await.unwrap(), 0);
}
