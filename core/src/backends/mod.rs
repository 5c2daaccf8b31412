//! Backends behind the ports: memory (tests), SQLite + local directory +
//! in-process queue (embedded mode).

#[cfg(feature = "amqp")]
pub mod amqp;
pub mod memory_queue;
pub mod memory_state;
pub mod object_artifacts;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sqlite;

#[cfg(feature = "amqp")]
pub use amqp::{AmqpOptions, AmqpQueue};
pub use memory_queue::MemoryQueue;
pub use memory_state::MemoryStateStore;
pub use object_artifacts::ObjectArtifactStore;
#[cfg(feature = "postgres")]
pub use postgres::{PgOptions, PostgresStateStore};
pub use sqlite::SqliteStateStore;

#[cfg(test)]
mod conformance {
    //! Every embedded backend against its port's suite.
    use super::*;
    use crate::testing::{artifact_store_suite, job_queue_suite, state_store_suite};
    use std::sync::Arc;

    #[tokio::test]
    async fn memory_state_store_conforms() {
        state_store_suite(Arc::new(MemoryStateStore::new())).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_state_store_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStateStore::open(&dir.path().join("state.db"))
            .await
            .unwrap();
        state_store_suite(Arc::new(store)).await;
    }

    #[tokio::test]
    async fn sqlite_state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let exp = crate::testing::new_experiment("persist");
        {
            let store = SqliteStateStore::open(&path).await.unwrap();
            use crate::ports::StateStore;
            store.insert_experiment(&exp).await.unwrap();
        }
        let store = SqliteStateStore::open(&path).await.unwrap();
        use crate::ports::StateStore;
        assert_eq!(store.get_experiment(exp.id).await.unwrap(), exp);
    }

    #[tokio::test]
    async fn memory_queue_conforms() {
        job_queue_suite(&MemoryQueue::new(), "cpu").await;
    }

    #[tokio::test]
    async fn memory_queue_close_ends_subscriptions() {
        use crate::ports::JobQueue;
        let q = MemoryQueue::new();
        let mut sub = q.subscribe("cpu", 1).await.unwrap();
        let waiter = tokio::spawn(async move { sub.next().await.unwrap().is_none() });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        q.close();
        assert!(waiter.await.unwrap());
    }

    #[tokio::test]
    async fn memory_artifacts_conform() {
        artifact_store_suite(&ObjectArtifactStore::in_memory(), "t").await;
    }

    #[tokio::test]
    async fn local_directory_artifacts_conform() {
        let dir = tempfile::tempdir().unwrap();
        artifact_store_suite(&ObjectArtifactStore::local(dir.path()).unwrap(), "t").await;
    }
}

#[cfg(all(test, feature = "amqp"))]
mod amqp_conformance {
    //! The RabbitMQ queue against the shared suite and its own failure modes.
    //! Each test uses a random prefix, so tests (and concurrent runs) never
    //! share a queue, and deletes its queues and exchanges at the end.
    use super::amqp::{AmqpOptions, AmqpQueue};
    use crate::ids::JobId;
    use crate::ports::JobQueue;
    use crate::testing::job_queue_suite;
    use crate::types::{DispatchMessage, JobKind};
    use crate::Error;
    use lapin::options::{
        BasicGetOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions,
        QueueDeleteOptions,
    };
    use lapin::types::{AMQPValue, FieldTable};
    use lapin::BasicProperties;
    use std::time::Duration;
    use tokio::time::timeout;

    const WAIT: Duration = Duration::from_secs(10);

    fn url() -> String {
        std::env::var("TRACSEQ_TEST_AMQP_URL")
            .or_else(|_| std::env::var("AMQP_URL"))
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
    }

    fn msg(priority: u8) -> DispatchMessage {
        DispatchMessage {
            job_id: JobId::new(),
            kind: JobKind::Trial,
            priority,
            job: None,
        }
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
}

#[cfg(all(test, feature = "postgres"))]
mod postgres_conformance {
    //! The PostgreSQL store against the shared suite, plus what only a server
    //! database has: several processes (pools) racing, and connections that die.
    //! Each test works in its own schema; without a server they skip (fail under CI).
    use super::postgres::testing::TestSchema;
    use super::*;
    use crate::ids::WorkerId;
    use crate::lifecycle::{Event, RetryPolicy};
    use crate::ports::{transition, StateStore, TransitionOutcome};
    use crate::testing::{new_experiment, new_job, state_store_suite, t0};
    use crate::types::{JobState, NewModelVersion};
    use crate::Error;
    use serde_json::{json, Map};
    use sqlx::{Connection, Executor, Row};
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use tokio::sync::Barrier;

    macro_rules! schema_or_skip {
        () => {
            match TestSchema::create().await {
                Some(s) => s,
                None => return,
            }
        };
    }

    /// A PostgreSQL server of this test's own (initdb into a temporary
    /// directory, a free port), so it can be stopped and started without
    /// touching the machine's shared server.
    struct PrivatePostgres {
        dir: tempfile::TempDir,
        bin: std::path::PathBuf,
        port: u16,
    }

    impl PrivatePostgres {
        fn pg_ctl(&self, args: &[&str]) -> bool {
            std::process::Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.dir.path().join("data"))
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        }

        fn create() -> Option<PrivatePostgres> {
            let bin = std::fs::read_dir("/usr/lib/postgresql")
                .ok()
                .and_then(|mut d| d.next())
                .and_then(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .filter(|b| b.join("initdb").exists());
            let Some(bin) = bin else {
                crate::testing::services::service_unavailable(
                    "PostgreSQL server binaries (initdb)",
                    "/usr/lib/postgresql",
                    &"not installed",
                );
                return None;
            };
            let dir = tempfile::tempdir().unwrap();
            let chown = std::process::Command::new("chown")
                .arg("postgres")
                .arg(dir.path())
                .status();
            assert!(
                chown.is_ok_and(|s| s.success()),
                "chown postgres (the test runs as root)"
            );
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let init = std::process::Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(bin.join("initdb"))
                .args(["-A", "trust", "-U", "postgres", "-D"])
                .arg(dir.path().join("data"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
            assert!(init.is_ok_and(|s| s.success()), "initdb failed");
            let pg = PrivatePostgres { dir, bin, port };
            assert!(pg.start(), "private PostgreSQL did not start");
            Some(pg)
        }

        fn start(&self) -> bool {
            let opts = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1",
                self.port,
                self.dir.path().display()
            );
            let log = self.dir.path().join("log");
            self.pg_ctl(&[
                "-o",
                &opts,
                "-l",
                log.to_str().unwrap_or("log"),
                "-w",
                "start",
            ])
        }

        fn stop(&self) -> bool {
            self.pg_ctl(&["-m", "fast", "-w", "stop"])
        }

        fn url(&self) -> String {
            format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
        }
    }

    impl Drop for PrivatePostgres {
        fn drop(&mut self) {
            self.stop();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_store_survives_a_server_restart() {
        let Some(pg) = PrivatePostgres::create() else {
            return;
        };
        let opts = PgOptions {
            max_connections: 4,
            acquire_timeout: std::time::Duration::from_secs(2),
            max_retries: 8,
            retry_backoff: std::time::Duration::from_millis(100),
            ..Default::default()
        };
        let store = PostgresStateStore::connect(&pg.url(), opts).await.unwrap();
        store.migrate().await.unwrap();
        let before = new_experiment("before-restart");
        store.insert_experiment(&before).await.unwrap();

        // The server goes down; a call made meanwhile waits, retries and
        // succeeds once the server is back.
        assert!(pg.stop());
        let reader = {
            let store = store.clone();
            tokio::spawn(async move { store.get_experiment(before.id).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        assert!(pg.start(), "restart");
        assert_eq!(reader.await.unwrap().unwrap().name, "before-restart");

        // And the pool works for new writes after the restart.
        let after = new_experiment("after-restart");
        store.insert_experiment(&after).await.unwrap();
        store.check_schema().await.unwrap();
        assert_eq!(store.list_experiments(None).await.unwrap().len(), 2);
        store.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_state_store_conforms() {
        let schema = schema_or_skip!();
        state_store_suite(Arc::new(schema.store(8).await)).await;
    }

    /// Two pools stand for two schedulers/workers; 16 claimers on one job,
    /// repeated over several jobs so the race really happens.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn claims_across_two_stores_have_one_winner() {
        let schema = schema_or_skip!();
        let a: Arc<dyn StateStore> = Arc::new(schema.store(8).await);
        let b: Arc<dyn StateStore> = Arc::new(schema.store(8).await);
        for _ in 0..10 {
            let job = new_job(None, 3);
            a.insert_job(&job).await.unwrap();
            let barrier = Arc::new(Barrier::new(16));
            let mut handles = Vec::new();
            for i in 0..16 {
                let s = if i % 2 == 0 { a.clone() } else { b.clone() };
                let barrier = barrier.clone();
                handles.push(tokio::spawn(async move {
                    barrier.wait().await;
                    let ev = Event::Claim {
                        worker: WorkerId(format!("w{i}")),
                        lease: chrono::Duration::seconds(30),
                    };
                    transition(s.as_ref(), job.id, ev, t0(), &RetryPolicy::default())
                        .await
                        .unwrap()
                }));
            }
            let mut winners = Vec::new();
            for h in handles {
                if let TransitionOutcome::Applied { job, .. } = h.await.unwrap() {
                    winners.push(job.lease_owner);
                }
            }
            assert_eq!(winners.len(), 1, "exactly one claim wins");
            let stored = b.get_job(job.id).await.unwrap();
            assert_eq!(
                (stored.state, stored.attempt, stored.version),
                (JobState::Leased, 1, 1)
            );
            assert_eq!(stored.lease_owner, winners[0]);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_trials_from_two_stores_are_dense() {
        let schema = schema_or_skip!();
        let a: Arc<dyn StateStore> = Arc::new(schema.store(6).await);
        let b: Arc<dyn StateStore> = Arc::new(schema.store(6).await);
        let exp = new_experiment("race");
        a.insert_experiment(&exp).await.unwrap();
        let barrier = Arc::new(Barrier::new(24));
        let mut handles = Vec::new();
        for i in 0..24 {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            let barrier = barrier.clone();
            handles.push(tokio::spawn(async move {
                barrier.wait().await;
                let job = (i % 3 == 0).then(|| new_job(Some(exp.id), 1));
                s.create_trial(exp.id, Map::new(), job, t0()).await.unwrap()
            }));
        }
        let mut numbers = Vec::new();
        for h in handles {
            numbers.push(h.await.unwrap().number);
        }
        numbers.sort();
        assert_eq!(numbers, (0..24).collect::<Vec<u64>>());
        for t in b.list_trials(exp.id).await.unwrap() {
            if let Some(job) = t.job_id {
                assert_eq!(a.get_job(job).await.unwrap().trial_number, Some(t.number));
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_registrations_resolve_in_the_database() {
        let schema = schema_or_skip!();
        let a: Arc<dyn StateStore> = Arc::new(schema.store(6).await);
        let b: Arc<dyn StateStore> = Arc::new(schema.store(6).await);
        let new = |version: u32, job: Option<crate::JobId>| NewModelVersion {
            name: "race".into(),
            version,
            job_id: job,
            family: "linear".into(),
            experiment_id: None,
            artifact_path: format!("models/race/{version}/model.json"),
            sha256: "cd".repeat(32),
            metrics: BTreeMap::new(),
            params: Map::new(),
            target: "y".into(),
        };
        // Different callers, one number: one wins, the rest conflict.
        let mut handles = Vec::new();
        for i in 0..12 {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            let mv = new(1, Some(crate::JobId::new()));
            handles.push(tokio::spawn(async move {
                s.register_model_version(mv, t0()).await
            }));
        }
        let (mut ok, mut conflicts) = (0, 0);
        for h in handles {
            match h.await.unwrap() {
                Ok(_) => ok += 1,
                Err(Error::Conflict(_)) => conflicts += 1,
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!((ok, conflicts), (1, 11));
        // One retried train job, many racing copies: all get the same version.
        let job = crate::JobId::new();
        let mut handles = Vec::new();
        for i in 0..12 {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            let mv = new(2 + i, Some(job));
            handles.push(tokio::spawn(async move {
                s.register_model_version(mv, t0()).await
            }));
        }
        let mut versions = Vec::new();
        for h in handles {
            versions.push(h.await.unwrap().unwrap().version);
        }
        versions.dedup();
        assert_eq!(versions.len(), 1, "one version per job: {versions:?}");
        assert_eq!(a.list_model_versions(Some("race")).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn check_schema_reports_missing_and_newer_migrations() {
        let schema = schema_or_skip!();
        let store = PostgresStateStore::connect(schema.url(), schema.options(2))
            .await
            .unwrap();
        match store.check_schema().await {
            Err(Error::Unavailable(m)) => assert!(m.contains("not migrated"), "{m}"),
            other => panic!("expected not migrated, got {other:?}"),
        }
        store.migrate().await.unwrap();
        store.check_schema().await.unwrap();
        store.migrate().await.unwrap(); // idempotent
        store.check_schema().await.unwrap();

        // A newer binary migrated this database.
        let mut admin = schema.admin().await;
        admin
            .execute(
                format!(
                    "INSERT INTO {}._sqlx_migrations (version, description, success, checksum, execution_time)
                     VALUES (9999, 'future', true, '\\x00', 1)",
                    schema.name()
                )
                .as_str(),
            )
            .await
            .unwrap();
        admin.close().await.unwrap();
        match store.check_schema().await {
            Err(Error::Invalid(m)) => assert!(
                m.contains("newer than this binary (version 9999 > 2)"),
                "{m}"
            ),
            other => panic!("expected newer schema, got {other:?}"),
        }
        assert!(matches!(store.migrate().await, Err(Error::Invalid(_))));
    }

    #[tokio::test]
    async fn connect_rejects_bad_input() {
        let opts = PgOptions {
            schema: Some("x; DROP TABLE jobs".into()),
            ..PgOptions::default()
        };
        let url = crate::testing::services::test_database_url();
        assert!(matches!(
            PostgresStateStore::connect(&url, opts).await,
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            PostgresStateStore::connect("not a url", PgOptions::default()).await,
            Err(Error::Invalid(_))
        ));
    }

    /// Terminates every server backend of the store (as a restart would),
    /// idle and mid-query, and checks the store carries on without
    /// double-applying the interrupted write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn survives_killed_connections() {
        let schema = schema_or_skip!();
        let opts = schema.options(4);
        let app = opts.application_name.clone();
        let store = PostgresStateStore::connect(schema.url(), opts)
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let exp = new_experiment("kill");
        store.insert_experiment(&exp).await.unwrap();

        let mut admin = schema.admin().await;
        let kill = format!(
            "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity
             WHERE application_name = '{app}' AND pid <> pg_backend_pid()"
        );
        // Idle connections die: the next calls still work.
        let n: i64 = admin.fetch_one(kill.as_str()).await.unwrap().get("n");
        assert!(n >= 1, "killed the store's connections");
        assert_eq!(store.get_experiment(exp.id).await.unwrap(), exp);

        // A connection dies mid-transaction: hold the experiment row so
        // create_trial blocks, kill the store's backends, then release.
        let mut tx = admin.begin().await.unwrap();
        tx.execute(
            format!(
                "SELECT 1 FROM {}.experiments WHERE id = '{}' FOR UPDATE",
                schema.name(),
                exp.id
            )
            .as_str(),
        )
        .await
        .unwrap();
        let s2 = store.clone();
        let pending = tokio::spawn(async move {
            s2.create_trial(exp.id, Map::new(), Some(new_job(Some(exp.id), 1)), t0())
                .await
        });
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let n: i64 = tx.fetch_one(kill.as_str()).await.unwrap().get("n");
        assert!(n >= 1, "killed the blocked connection");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        tx.commit().await.unwrap();
        let trial = pending.await.unwrap().expect("retried after the kill");
        assert_eq!(trial.number, 0);
        assert_eq!(store.list_trials(exp.id).await.unwrap().len(), 1);
        let mut p = Map::new();
        p.insert("after".into(), json!(true));
        assert_eq!(
            store
                .create_trial(exp.id, p, None, t0())
                .await
                .unwrap()
                .number,
            1
        );
        admin.close().await.unwrap();
    }
}
