//! The PostgreSQL store against the shared suite, plus what only a server
//! database has: several processes (pools) racing, and connections that die.
//! Each test works in its own schema; without a server they skip (fail under CI).
use crate::postgres::testing::TestSchema;
use crate::testing::{
    alert_store_suite, audit_entry, new_experiment, new_job, prediction_log_suite,
    security_store_suite, state_store_suite, t0,
};
use crate::*;
use serde_json::{json, Map};
use sqlx::{Connection, Executor, Row};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Barrier;
use tracseq_core::ids::WorkerId;
use tracseq_core::lifecycle::{Event, RetryPolicy};
use tracseq_core::ports::{transition, StateStore, TransitionOutcome};
use tracseq_core::types::{JobState, NewModelVersion};
use tracseq_core::Error;

macro_rules! schema_or_skip {
    () => {
        match TestSchema::create().await {
            Some(s) => s,
            None => return,
        }
    };
}

// The registry's records: after the macro, which it uses.
mod registry;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_prediction_log_conforms() {
    let schema = schema_or_skip!();
    prediction_log_suite(Arc::new(schema.store(8).await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_alert_store_conforms() {
    let schema = schema_or_skip!();
    alert_store_suite(Arc::new(schema.store(8).await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_security_store_conforms() {
    let schema = schema_or_skip!();
    security_store_suite(Arc::new(schema.store(8).await)).await;
}

/// Two api replicas (two pools) appending at once still make one chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_appends_from_two_stores_make_one_chain() {
    use tracseq_core::ports::SecurityStore;
    use tracseq_core::security::audit::{verify, ChainHead};
    let schema = schema_or_skip!();
    let a = Arc::new(schema.store(4).await);
    let b = Arc::new(
        PostgresStateStore::connect(schema.url(), schema.options(4))
            .await
            .unwrap(),
    );
    let tasks: Vec<_> = (0..24)
        .map(|n| {
            let s: Arc<dyn SecurityStore> = if n % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                s.append_audit(audit_entry("experiments.ask", None, &["e"], n))
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let chain = a.audit_chain(0, 100).await.unwrap();
    assert_eq!(chain.len(), 24);
    verify(&mut ChainHead::default(), &chain).unwrap();
}

#[tokio::test]
async fn postgres_refuses_to_change_or_delete_audit_rows() {
    use tracseq_core::ports::SecurityStore;
    let schema = schema_or_skip!();
    let store = schema.store(2).await;
    store
        .append_audit(audit_entry("datasets.create", None, &["d"], 0))
        .await
        .unwrap();
    let mut admin = schema.admin().await;
    for sql in [
        "UPDATE audit_log SET action = 'x'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        let sql = format!("SET search_path TO {}; {sql}", schema.name());
        let err = admin.execute(sql.as_str()).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(store.audit_chain(0, 10).await.unwrap().len(), 1);
}

/// A connection to `schema` as one of `ops/postgres-roles.sql`'s roles
/// (the test server trusts local connections, so no password).
async fn connect_as(
    schema: &crate::postgres::testing::TestSchema,
    role: &str,
) -> sqlx::PgConnection {
    use std::str::FromStr;
    let opts = sqlx::postgres::PgConnectOptions::from_str(schema.url())
        .unwrap()
        .username(role)
        .options([("search_path", schema.name())]);
    sqlx::PgConnection::connect_with(&opts)
        .await
        .unwrap_or_else(|e| panic!("connect as {role}: {e}"))
}

/// Runs the shipped grants file in `schema`, as an operator would.
async fn apply_role_grants(schema: &crate::postgres::testing::TestSchema) {
    let sql = include_str!("../../../ops/postgres-roles.sql");
    let mut admin = schema.admin().await;
    admin
        .execute(format!("SET search_path TO {}", schema.name()).as_str())
        .await
        .unwrap();
    admin.execute(sql).await.expect("ops/postgres-roles.sql");
}

fn is_permission_denied(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|c| c == "42501")
}

#[tokio::test]
async fn the_worker_role_cannot_read_tokens_or_write_the_audit_log() {
    let schema = schema_or_skip!();
    let _migrated = schema.store(1).await;
    apply_role_grants(&schema).await;
    // Twice: re-running the grants after an upgrade is how new tables get theirs.
    apply_role_grants(&schema).await;

    let mut worker = connect_as(&schema, "tracseq_worker").await;
    let denied = [
        "SELECT * FROM api_tokens",
        "UPDATE api_tokens SET revoked_at = 0",
        "SELECT * FROM audit_log",
        "INSERT INTO audit_log (seq, at, action, targets, request_id, hash, body) \
         VALUES (1, 0, 'x', ' ', 'r', 'h', '{}')",
        "DELETE FROM jobs",
        "UPDATE datasets SET name = 'x'",
        "DROP TABLE jobs",
        "SELECT * FROM prediction_logs",
        "SELECT * FROM alerts",
    ];
    for sql in denied {
        let err = worker.execute(sql).await.expect_err(sql);
        assert!(
            is_permission_denied(&err) || err.to_string().contains("must be owner"),
            "{sql}: {err}"
        );
    }
    // What a worker does: read its job and data set, move the job, heartbeat.
    for sql in [
        "SELECT count(*) FROM jobs",
        "SELECT count(*) FROM datasets",
        "UPDATE jobs SET state = state WHERE false",
        "UPDATE workers SET body = body WHERE false",
    ] {
        worker.execute(sql).await.expect(sql);
    }

    let mut api = connect_as(&schema, "tracseq_api").await;
    api.execute("SELECT count(*) FROM api_tokens")
        .await
        .unwrap();
    api.execute(
        "INSERT INTO audit_log (seq, at, action, targets, request_id, hash, body) \
         VALUES (1, 0, 'x', ' ', 'r', 'h', '{}')",
    )
    .await
    .expect("the api appends to the audit log");
    api.execute(
        "INSERT INTO prediction_logs (request_id, at, model, version, variant, body) \
         VALUES (gen_random_uuid(), 0, 'm', 1, 'primary', '{}')",
    )
    .await
    .expect("the api appends to the prediction log");
    for sql in [
        "UPDATE audit_log SET action = 'y'",
        "DELETE FROM audit_log",
        "UPDATE prediction_logs SET model = 'y'",
        "DELETE FROM prediction_logs",
    ] {
        let err = api.execute(sql).await.expect_err(sql);
        assert!(is_permission_denied(&err), "{sql}: {err}");
    }

    let mut scheduler = connect_as(&schema, "tracseq_scheduler").await;
    scheduler
        .execute("SELECT count(*) FROM prediction_logs")
        .await
        .expect("the drift monitor reads the prediction log");
    for sql in [
        "DELETE FROM prediction_outcomes WHERE false",
        "DELETE FROM prediction_logs WHERE false",
    ] {
        scheduler
            .execute(sql)
            .await
            .expect("retention deletes old predictions");
    }
    // It audits what it does on nobody's request (a canary's automatic
    // rollback), and reads the chain it appends to; never changes it.
    scheduler
        .execute("SELECT count(*) FROM audit_log")
        .await
        .expect("the scheduler reads the audit chain's end");
    // Its monitor raises alerts, delivers them and keeps drift scores.
    for sql in [
        "INSERT INTO alerts (id, at, kind, key, model, body) \
         VALUES (gen_random_uuid(), 0, 'drift', 'k', 'm', '{}')",
        "UPDATE alerts SET due_at = NULL",
        "INSERT INTO drift_scores (model, version, at, body) VALUES ('m', 1, 0, '{}')",
    ] {
        scheduler.execute(sql).await.expect(sql);
    }
    api.execute("SELECT count(*) FROM alerts")
        .await
        .expect("the api lists alerts");
    for sql in [
        "UPDATE alerts SET due_at = NULL",
        "INSERT INTO drift_scores (model, version, at, body) VALUES ('n', 1, 0, '{}')",
    ] {
        let err = api.execute(sql).await.expect_err(sql);
        assert!(is_permission_denied(&err), "{sql}: {err}");
    }
    for sql in [
        "DELETE FROM alerts",
        "UPDATE prediction_logs SET model = 'y'",
        "SELECT * FROM api_tokens",
        "UPDATE audit_log SET action = 'y'",
        "INSERT INTO prediction_logs (request_id, at, model, version, variant, body) \
         VALUES (gen_random_uuid(), 0, 'm', 1, 'primary', '{}')",
    ] {
        let err = scheduler.execute(sql).await.expect_err(sql);
        assert!(is_permission_denied(&err), "{sql}: {err}");
    }
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
    let new = |version: u32, job: Option<tracseq_core::JobId>| NewModelVersion {
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
        owner: None,
        description: None,
        lineage: Default::default(),
        tags: Default::default(),
    };
    // Different callers, one number: one wins, the rest conflict.
    let mut handles = Vec::new();
    for i in 0..12 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        let mv = new(1, Some(tracseq_core::JobId::new()));
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
    let job = tracseq_core::JobId::new();
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
            m.contains("newer than this binary (version 9999 > 7)"),
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
