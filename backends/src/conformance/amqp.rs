//! The RabbitMQ queue against the shared suite and its own failure modes.
//! Each test uses a random prefix, so tests (and concurrent runs) never
//! share a queue, and deletes its queues and exchanges at the end.
use crate::amqp::{AmqpOptions, AmqpQueue};
use crate::testing::{job_queue_suite, msg};
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use std::time::Duration;
use tokio::time::timeout;
use tracseq_core::ports::JobQueue;
use tracseq_core::types::DispatchMessage;
use tracseq_core::Error;

const WAIT: Duration = Duration::from_secs(10);

fn url() -> String {
    std::env::var("TRACSEQ_TEST_AMQP_URL")
        .or_else(|_| std::env::var("AMQP_URL"))
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A queue with a fresh prefix, or `None` (test skipped) when no broker
/// answers and `CI` is unset. Under CI a missing broker fails the test.
async fn queue(test: &str) -> Option<AmqpQueue> {
    queue_with(test, Duration::from_secs(15)).await
}

async fn queue_with(test: &str, reconnect_timeout: Duration) -> Option<AmqpQueue> {
    let opts = AmqpOptions {
        prefix: format!("t-{}", uuid::Uuid::new_v4()),
        reconnect_timeout,
        ..AmqpOptions::default()
    };
    match AmqpQueue::connect(&url(), opts).await {
        Ok(q) => Some(q),
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("{test}: RabbitMQ at {} is required under CI: {e}", url())
        }
        Err(e) => {
            eprintln!("{test}: skipped, RabbitMQ at {} unreachable: {e}", url());
            None
        }
    }
}

async fn eventually_depth(q: &AmqpQueue, dead: bool, want: u64) -> u64 {
    let mut got = u64::MAX;
    for _ in 0..50 {
        got = if dead {
            q.dead_letter_depth().await.unwrap()
        } else {
            q.depth("cpu").await.unwrap()
        };
        if got == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_queue_conforms() {
    let Some(q) = queue("amqp_queue_conforms").await else {
        return;
    };
    job_queue_suite(&q, "cpu").await;
    // The second class is a real, separate queue.
    let m = msg(3);
    q.publish("gpu", &m).await.unwrap();
    assert_eq!(q.depth("gpu").await.unwrap(), 1);
    assert_eq!(q.depth("cpu").await.unwrap(), 0);
    let mut sub = q.subscribe("gpu", 1).await.unwrap();
    let d = timeout(WAIT, sub.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(d.message, m);
    d.ack().await.unwrap();
    drop(sub);
    // Nacked-without-requeue messages of the suite were dead-lettered.
    assert_eq!(eventually_depth(&q, true, 1).await, 1);
    q.close().await;
    q.delete_topology_for_test(&url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_malformed_message_is_dead_lettered() {
    let Some(q) = queue("amqp_malformed_message_is_dead_lettered").await else {
        return;
    };
    let raw = q.raw_channel_for_test().await;
    for body in [&b"not json"[..], br#"{"job_id": 7}"#] {
        raw.basic_publish(
            q.exchange_for_test().into(),
            "cpu".into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default().with_priority(9),
        )
        .await
        .unwrap();
    }
    let good = msg(0);
    q.publish("cpu", &good).await.unwrap();
    let mut sub = q.subscribe("cpu", 1).await.unwrap();
    // The garbage (higher priority, so first in line) is skipped.
    let d = timeout(WAIT, sub.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(d.message, good);
    d.ack().await.unwrap();
    assert_eq!(eventually_depth(&q, true, 2).await, 2);
    // Consumption continues after dead-lettering.
    let next = msg(0);
    q.publish("cpu", &next).await.unwrap();
    let d = timeout(WAIT, sub.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(d.message, next);
    d.ack().await.unwrap();
    drop(sub);
    q.close().await;
    q.delete_topology_for_test(&url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_publish_is_confirmed_persistent_and_prioritised() {
    let Some(q) = queue("amqp_publish_is_confirmed_persistent_and_prioritised").await else {
        return;
    };
    // Confirmed means enqueued: visible at once, no settling delay.
    let m = msg(7);
    q.publish("cpu", &m).await.unwrap();
    assert_eq!(q.depth("cpu").await.unwrap(), 1);
    let raw = q.raw_channel_for_test().await;
    let got = raw
        .basic_get(
            q.queue_name("cpu").as_str().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .expect("published message is in the queue");
    assert_eq!(got.delivery.properties.delivery_mode(), &Some(2));
    assert_eq!(got.delivery.properties.priority(), &Some(7));
    let body: DispatchMessage = serde_json::from_slice(&got.delivery.data).unwrap();
    assert_eq!(body, m);

    // Unknown classes are refused before reaching the broker.
    assert!(matches!(q.publish("tpu", &m).await, Err(Error::Invalid(_))));
    assert!(q.subscribe("cpu", 0).await.is_err());

    // A broker nack is an error: bind a second queue that rejects every
    // publish (full, overflow = reject-publish) to the cpu route.
    let full = format!("{}-full", q.queue_name("cpu"));
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongInt(0));
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    raw.queue_declare(full.as_str().into(), QueueDeclareOptions::default(), args)
        .await
        .unwrap();
    raw.queue_bind(
        full.as_str().into(),
        q.exchange_for_test().into(),
        "cpu".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let refused = timeout(WAIT, q.publish("cpu", &msg(1))).await.unwrap();
    assert!(
        matches!(refused, Err(Error::Unavailable(_))),
        "nacked publish must fail, got {refused:?}"
    );
    raw.queue_delete(full.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    q.publish("cpu", &msg(1)).await.unwrap();
    q.close().await;
    q.delete_topology_for_test(&url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_recovers_from_connection_loss() {
    let Some(q) = queue("amqp_recovers_from_connection_loss").await else {
        return;
    };
    let first = msg(0);
    q.publish("cpu", &first).await.unwrap();
    let mut sub = q.subscribe("cpu", 1).await.unwrap();
    let held = timeout(WAIT, sub.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(held.message, first);

    q.sever_connection_for_test().await;

    // Settling a delivery of the dead channel is harmless...
    held.ack().await.unwrap();
    // ...publishing reconnects and re-declares...
    let second = msg(0);
    timeout(WAIT * 2, q.publish("cpu", &second))
        .await
        .unwrap()
        .unwrap();
    // ...and the subscription re-creates its consumer: the unacked
    // message comes back (redelivered), then the new one.
    let d = timeout(WAIT * 2, sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(d.message, first);
    assert!(d.redelivered);
    d.ack().await.unwrap();
    let d = timeout(WAIT, sub.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(d.message, second);
    d.ack().await.unwrap();

    // A second loss, this time noticed first by depth and subscribe.
    q.sever_connection_for_test().await;
    assert_eq!(eventually_depth(&q, false, 0).await, 0);
    let third = msg(0);
    q.publish("cpu", &third).await.unwrap();
    let d = timeout(WAIT * 2, sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(d.message, third);
    d.ack().await.unwrap();
    drop(sub);

    q.close().await;
    q.delete_topology_for_test(&url()).await;
    // After close: subscriptions end and publishing is refused.
    assert!(matches!(
        q.publish("cpu", &msg(0)).await,
        Err(Error::Unavailable(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_outage_is_unavailable_after_bounded_wait_then_recovers() {
    let test = "amqp_outage_is_unavailable_after_bounded_wait_then_recovers";
    let Some(q) = queue_with(test, Duration::from_secs(3)).await else {
        return;
    };
    let mut sub = q.subscribe("cpu", 1).await.unwrap();
    // "Broker down": reconnects go to a port nobody listens on.
    q.redirect_for_test("amqp://guest:guest@127.0.0.1:1/%2f");
    q.sever_connection_for_test().await;
    let started = std::time::Instant::now();
    let lost = msg(0);
    let err = q.publish("cpu", &lost).await.unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    // Retried with backoff for about the 3 s reconnect timeout, no more.
    assert!(
        waited >= Duration::from_secs(1) && waited <= Duration::from_secs(8),
        "bounded wait, took {waited:?}"
    );
    assert!(matches!(sub.next().await, Err(Error::Unavailable(_))));

    // "Broker back": both paths recover without new handles.
    q.redirect_for_test(&url());
    let m = msg(0);
    q.publish("cpu", &m).await.unwrap();
    let d = timeout(WAIT, sub.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(d.message, m);
    d.ack().await.unwrap();
    // Closing the queue ends a subscription waiting for a message.
    let waiter = tokio::spawn(async move { sub.next().await.map(|d| d.is_none()) });
    tokio::time::sleep(Duration::from_millis(50)).await;
    q.close().await;
    assert!(timeout(WAIT, waiter).await.unwrap().unwrap().unwrap());
    q.delete_topology_for_test(&url()).await;
}

#[tokio::test]
async fn amqp_unreachable_broker_is_unavailable() {
    // Port 1 on localhost refuses at once: no broker needed.
    let err = AmqpQueue::connect("amqp://guest:guest@127.0.0.1:1/%2f", AmqpOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert!(err.is_retryable());
}
