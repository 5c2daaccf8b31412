//! A distributed platform as separate processes (api, scheduler, workers)
//! on PostgreSQL, RabbitMQ and S3, each process kind reaching PostgreSQL as
//! its own role from `ops/postgres-roles.sql`. With `CI` set a missing
//! service fails the test, otherwise it is skipped.

use super::{free_port, Api};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Env {
    pub vars: Vec<(String, String)>,
    pub children: Vec<(String, Child)>,
    /// The api process's API, once started.
    pub api: Api,
}

pub fn service_or_skip(what: &str, ok: bool) -> bool {
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{what} is required when CI is set (run ops/test.sh)"
        );
        eprintln!("skipped: {what} unavailable (ops/test.sh starts it)");
    }
    ok
}

pub fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

impl Env {
    pub fn new() -> Option<Env> {
        Self::with_amqp(None)
    }

    pub fn with_amqp(amqp: Option<String>) -> Option<Env> {
        let s3 = std::env::var("TRACSEQ_TEST_S3_ENDPOINT").ok();
        if !service_or_skip("PostgreSQL on 127.0.0.1:5432", port_open(5432))
            || !service_or_skip("RabbitMQ on 127.0.0.1:5672", port_open(5672))
            || !service_or_skip("an S3 server (TRACSEQ_TEST_S3_ENDPOINT)", s3.is_some())
        {
            return None;
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
        let vars = vec![
            (
                "DATABASE_URL",
                var(
                    "TRACSEQ_TEST_DATABASE_URL",
                    "postgres://postgres@127.0.0.1:5432/test",
                ),
            ),
            ("TRACSEQ_DISTRIBUTED_DATABASE_SCHEMA", format!("e2e_{id}")),
            (
                "AMQP_URL",
                amqp.unwrap_or_else(|| {
                    var(
                        "TRACSEQ_TEST_AMQP_URL",
                        "amqp://guest:guest@127.0.0.1:5672/%2f",
                    )
                }),
            ),
            ("TRACSEQ_DISTRIBUTED_AMQP_PREFIX", format!("e2e-{id}")),
            (
                "ARTIFACT_URL",
                format!(
                    "s3://{}/e2e-{id}",
                    var("TRACSEQ_TEST_S3_BUCKET", "tracseq-test")
                ),
            ),
            ("S3_ENDPOINT", s3.unwrap_or_default()),
            (
                "AWS_ACCESS_KEY_ID",
                var("TRACSEQ_TEST_S3_ACCESS_KEY", "tracseq"),
            ),
            (
                "AWS_SECRET_ACCESS_KEY",
                var("TRACSEQ_TEST_S3_SECRET_KEY", "tracseq-secret"),
            ),
            ("AWS_REGION", "us-east-1".into()),
            // Every role gets the same key-encryption key, as an operator
            // would hand it out; artifacts are sealed with it.
            ("TRACSEQ_KEK", kek_hex()),
            // Short leases so a killed worker's job comes back quickly.
            ("TRACSEQ_WORKER_LEASE_SECS", "3".into()),
            ("TRACSEQ_WORKER_HEARTBEAT_MS", "500".into()),
            ("TRACSEQ_SCHEDULER_BACKOFF_BASE_MS", "200".into()),
            ("TRACSEQ_SCHEDULER_TICK_MS", "100".into()),
            ("TRACSEQ_SCHEDULER_REPUBLISH_SECS", "3".into()),
            ("RUST_LOG", "warn,warp::filters::trace=error".into()),
        ];
        let vars = vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        Some(Env {
            vars,
            children: Vec::new(),
            api: Api::new(String::new()),
        })
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tracseq-ml"));
        cmd.args(args)
            .env_remove("TRACSEQ_API_PORT")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn spawn(&mut self, name: &str, args: &[&str]) {
        let mut cmd = self.command(args);
        // The least-privilege role of this process kind (api, scheduler,
        // worker0.. -> worker).
        let kind = name.trim_end_matches(|c: char| c.is_ascii_digit());
        let mut url = reqwest::Url::parse(&self.var("DATABASE_URL")).expect("DATABASE_URL");
        url.set_username(&format!("tracseq_{kind}")).unwrap();
        cmd.env("DATABASE_URL", url.as_str());
        let child = cmd.spawn().expect("spawn tracseq-ml");
        self.children.push((name.to_string(), child));
    }

    pub fn pid(&self, name: &str) -> u32 {
        self.children
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.id())
            .expect("child")
    }

    pub fn kill9(&mut self, name: &str) {
        let pos = self
            .children
            .iter()
            .position(|(n, _)| n == name)
            .expect("child");
        let (_, mut child) = self.children.remove(pos);
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    pub async fn start(&mut self) {
        let status = self.command(&["migrate"]).status().expect("migrate");
        assert!(status.success(), "tracseq-ml migrate failed");
        self.grant_roles().await;
        // A distributed platform starts with no token: the operator makes the
        // first admin one with the CLI, which prints only the secret.
        let created = self
            .command(&["token", "create", "--name", "e2e-admin", "--role", "admin"])
            .stdout(Stdio::piped())
            .output()
            .expect("token create");
        assert!(created.status.success(), "tracseq-ml token create failed");
        let token = String::from_utf8(created.stdout).unwrap();
        let port = free_port();
        self.api = Api::with_token(format!("http://127.0.0.1:{port}"), token.trim());
        self.spawn("api", &["api", "--port", &port.to_string()]);
        self.spawn("scheduler", &["scheduler"]);
        for i in 0..3 {
            self.spawn(&format!("worker{i}"), &["worker"]);
        }
        self.api.wait_healthy(Duration::from_secs(60)).await;
    }

    /// Runs `ops/postgres-roles.sql` in this test's schema, as an operator
    /// does after `migrate`.
    pub async fn grant_roles(&self) {
        use sqlx::{Connection, Executor};
        let mut conn = sqlx::PgConnection::connect(&self.var("DATABASE_URL"))
            .await
            .expect("connect as the owner");
        let schema = self.var("TRACSEQ_DISTRIBUTED_DATABASE_SCHEMA");
        conn.execute(format!("SET search_path TO {schema}").as_str())
            .await
            .unwrap();
        conn.execute(include_str!("../../ops/postgres-roles.sql"))
            .await
            .expect("ops/postgres-roles.sql");
        let _ = conn.close().await;
    }

    pub async fn experiment(&self, ds: &str, trials: u64, seed: u64) -> String {
        let body = json!({"name": format!("dist-{seed}"), "dataset_id": ds, "target": "quality_score",
                          "budget": {"trials": trials}, "parallelism": 3, "seed": seed, "model_name": "dist"});
        let exp = self
            .api
            .post_ok(
                "/experiments",
                body.to_string().into_bytes(),
                "application/json",
            )
            .await;
        exp["id"].as_str().unwrap().to_string()
    }

    pub fn var(&self, key: &str) -> String {
        self.vars
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    /// Removes this test's schema, queues and exchanges from the shared
    /// PostgreSQL and RabbitMQ (the S3 server belongs to this test run).
    pub async fn cleanup(mut self) {
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
        let schema = self.var("TRACSEQ_DISTRIBUTED_DATABASE_SCHEMA");
        if let Ok(pool) = sqlx::PgPool::connect(&self.var("DATABASE_URL")).await {
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .execute(&pool)
                .await;
        }
        let prefix = self.var("TRACSEQ_DISTRIBUTED_AMQP_PREFIX");
        let props = lapin::ConnectionProperties::default();
        if let Ok(conn) = lapin::Connection::connect(&self.var("AMQP_URL"), props).await {
            if let Ok(ch) = conn.create_channel().await {
                for q in ["cpu", "gpu", "dead"] {
                    let name = format!("{prefix}.jobs.{q}");
                    let _ = ch
                        .queue_delete(name.as_str().into(), Default::default())
                        .await;
                }
                for x in ["jobs", "jobs.dlx"] {
                    let name = format!("{prefix}.{x}");
                    let _ = ch
                        .exchange_delete(name.as_str().into(), Default::default())
                        .await;
                }
            }
            let _ = conn.close(0, "test done".into()).await;
        }
    }

    pub async fn wait_done(&self, id: &str, secs: u64) -> Value {
        let path = format!("/experiments/{id}");
        self.api
            .wait_for(&path, Duration::from_secs(secs), |s| {
                s["state"] == "completed" || s["state"] == "failed" || s["state"] == "cancelled"
            })
            .await
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A new key-encryption key, as `tracseq-ml keys generate` prints it.
pub fn kek_hex() -> String {
    let (_, line) = tracseq_backends::encryption::keys::generate_key_line().unwrap();
    line.split_whitespace().next().unwrap().to_string()
}
