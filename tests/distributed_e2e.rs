//! The distributed deployment as separate processes — api, scheduler and
//! three workers on PostgreSQL, RabbitMQ and S3 — surviving kill -9 of a
//! worker mid-trial and of the scheduler mid-experiment. Each process kind
//! reaches PostgreSQL as its own role from `ops/postgres-roles.sql`, so a
//! grant the platform needs and the file lacks fails these tests.
//!
//! Needs the services `ops/test.sh` checks or starts; with `CI` set a
//! missing one fails the test, otherwise it is skipped.

mod common;

use common::distributed::{port_open, service_or_skip, Env};
use common::free_port;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What another S3 client (curl's own SigV4 signing, no object_store
/// involved) finds in the bucket: the model at its documented key, sealed,
/// with its key record beside it naming the key-encryption key the roles
/// were given, and no plain digest; through the api the same model comes
/// back in the clear with the digest the listing reports.
async fn objects_are_sealed_for_another_s3_client(env: &Env) {
    let endpoint = env.var("S3_ENDPOINT");
    let url = env.var("ARTIFACT_URL");
    let (bucket, prefix) = url
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .expect("ARTIFACT_URL is s3://bucket/prefix");
    let user = format!(
        "{}:{}",
        env.var("AWS_ACCESS_KEY_ID"),
        env.var("AWS_SECRET_ACCESS_KEY")
    );
    let curl = |path: &str| -> Vec<u8> {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--fail",
                "--aws-sigv4",
                "aws:amz:us-east-1:s3",
                "--user",
            ])
            .arg(&user)
            .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
            .arg(format!("{endpoint}/{bucket}{path}"))
            .output()
            .expect("curl runs");
        assert!(
            out.status.success(),
            "curl {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    // ListObjectsV2 (one query parameter: curl 7.88 signs no more).
    let listing = String::from_utf8(curl("?list-type=2")).unwrap();
    let model_key = format!("{prefix}/models/dist/1/model.json");
    for key in [model_key.clone(), format!("{model_key}.key")] {
        assert!(
            listing.contains(&format!("<Key>{key}</Key>")),
            "{key} not listed by S3: {listing}"
        );
    }
    let plain_digests: Vec<&str> = listing
        .split("<Key>")
        .filter_map(|k| k.split("</Key>").next())
        .filter(|k| k.starts_with(&format!("{prefix}/")) && k.ends_with(".sha256"))
        .collect();
    assert!(plain_digests.is_empty(), "plain digests: {plain_digests:?}");
    assert!(listing.contains(&format!("<Key>{prefix}/datasets/")));
    let sealed = curl(&format!("/{model_key}"));
    let record: Value = serde_json::from_slice(&curl(&format!("/{model_key}.key"))).unwrap();
    let kek =
        tracseq_backends::encryption::keys::Keyring::from_text(&env.var("TRACSEQ_KEK")).unwrap();
    assert_eq!(record["key_id"], kek.ids()[0].to_string(), "{record}");
    assert_eq!(record["cipher"], "AES-256-GCM");

    let r = env
        .api
        .http
        .get(format!(
            "{}/artifacts/models/dist/1/model.json",
            env.api.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let checksum = r.headers()["x-checksum-sha256"]
        .to_str()
        .unwrap()
        .to_string();
    let model = r.bytes().await.unwrap();
    assert_eq!(
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&model)),
        checksum
    );
    let listed = env.api.get_ok("/artifacts?prefix=models/dist").await;
    assert_eq!(listed["items"][0]["sha256"], checksum.as_str());
    assert_eq!(listed["items"][0]["size"], model.len());
    assert!(sealed.starts_with(b"TSQENC"), "sealed in S3");
    let window = &model[..model.len().min(32)];
    assert!(
        !sealed.windows(window.len()).any(|w| w == window),
        "no plaintext in S3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_fleet_survives_killed_worker_and_scheduler() {
    let Some(mut env) = Env::new() else { return };
    env.start().await;
    let ds = env.api.upload_lab(500, 21).await;
    let ds = ds["id"].as_str().unwrap().to_string();

    // 40 trials; kill -9 worker0 while it holds a trial.
    let id = env.experiment(&ds, 40, 1).await;
    let victim = format!("-{}-w", env.pid("worker0"));
    let deadline = Instant::now() + Duration::from_secs(120);
    let killed_job = loop {
        let running = env
            .api
            .get_ok(&format!(
                "/experiments/{id}/trials?state=running&fields=job_id"
            ))
            .await;
        let mut found = None;
        for t in running.as_array().unwrap() {
            let job = env
                .api
                .get_ok(&format!("/jobs/{}", t["job_id"].as_str().unwrap()))
                .await;
            if job["state"] == "running"
                && job["lease_owner"]
                    .as_str()
                    .is_some_and(|o| o.contains(&victim))
            {
                found = Some(job["id"].as_str().unwrap().to_string());
                break;
            }
        }
        if let Some(job) = found {
            break job;
        }
        assert!(Instant::now() < deadline, "worker0 never held a trial");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    env.kill9("worker0");
    let done = env.wait_done(&id, 600).await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(done["counts"]["total"], 40, "exactly the planned trials");
    assert_eq!(done["counts"]["running"], 0);
    let job = env.api.get_ok(&format!("/jobs/{killed_job}")).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["attempt"], 2, "ran again elsewhere: {job}");
    assert_eq!(
        job["result_attempt"], 2,
        "result recorded once, by the second attempt"
    );
    assert!(job["last_error"]
        .as_str()
        .unwrap_or_default()
        .contains("lease expired"));

    // The model is registered, stored in S3 and served.
    let features = Value::Object(tracseq_learn::lab::example_record(2));
    let body = json!({"model": "dist", "version": 1, "features": features});
    let (status, pred) = env.api.post_json("/predict", &body).await;
    assert_eq!(status, 200, "{pred}");
    assert!(pred["value"].as_f64().unwrap().is_finite());
    let listing = env.api.get_ok("/artifacts?prefix=models/dist").await;
    assert_eq!(listing["items"].as_array().unwrap().len(), 1);
    objects_are_sealed_for_another_s3_client(&env).await;

    // kill -9 the scheduler mid-experiment and start another.
    let id2 = env.experiment(&ds, 12, 2).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = env.api.get_ok(&format!("/experiments/{id2}")).await;
        if s["counts"]["complete"].as_u64().unwrap_or(0)
            + s["counts"]["pruned"].as_u64().unwrap_or(0)
            >= 3
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "second experiment made no progress"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.kill9("scheduler");
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.spawn("scheduler2", &["scheduler"]);
    let done = env.wait_done(&id2, 600).await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(done["counts"]["total"], 12);
    let trials = env
        .api
        .get_ok(&format!("/experiments/{id2}/trials?fields=number,state"))
        .await;
    let numbers: BTreeSet<u64> = trials
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["number"].as_u64().unwrap())
        .collect();
    assert_eq!(
        numbers,
        (0..12).collect::<BTreeSet<u64>>(),
        "no trial number used twice, none lost"
    );
    let model = env.api.get_ok("/models/dist").await;
    assert_eq!(
        model["versions"].as_array().unwrap().len(),
        2,
        "one version per experiment"
    );
    env.cleanup().await;
}

/// A RabbitMQ node of this test's own, on free ports, in a temporary
/// directory: stopping it never touches the machine's shared broker.
struct PrivateRabbit {
    dir: tempfile::TempDir,
    node: String,
    port: u16,
    dist_port: u16,
}

const RABBIT_BIN: &str = "/usr/lib/rabbitmq/bin";

impl PrivateRabbit {
    fn available() -> bool {
        std::path::Path::new(RABBIT_BIN)
            .join("rabbitmq-server")
            .exists()
    }

    fn new() -> PrivateRabbit {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("enabled_plugins"), "[].").unwrap();
        let node = format!(
            "tqtest{}@localhost",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        PrivateRabbit {
            dir,
            node,
            port: free_port(),
            dist_port: free_port(),
        }
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn command(&self, bin: &str) -> Command {
        let d = self.dir.path();
        let mut cmd = Command::new(format!("{RABBIT_BIN}/{bin}"));
        cmd.env("HOME", d)
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_PID_FILE", d.join("pid"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", d.join("none"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    fn start(&self) {
        let ok = self
            .command("rabbitmq-server")
            .arg("-detached")
            .status()
            .map(|s| s.success());
        assert!(
            matches!(ok, Ok(true)),
            "could not start a private RabbitMQ node"
        );
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let ready = self
                .command("rabbitmqctl")
                .args(["-n", &self.node, "-q", "status"])
                .status();
            if matches!(ready, Ok(s) if s.success()) && port_open(self.port) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "private RabbitMQ node did not become ready"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn stop(&self) {
        let _ = self
            .command("rabbitmqctl")
            .args(["-n", &self.node, "stop"])
            .status();
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_loss_mid_experiment_every_job_completes_once() {
    if !service_or_skip(
        "the rabbitmq-server package (for a private node)",
        PrivateRabbit::available(),
    ) {
        return;
    }
    let rabbit = PrivateRabbit::new();
    rabbit.start();
    let Some(mut env) = Env::with_amqp(Some(rabbit.url())) else {
        return;
    };
    env.start().await;
    let ds = env.api.upload_lab(400, 8).await;
    let id = env.experiment(ds["id"].as_str().unwrap(), 20, 3).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = env.api.get_ok(&format!("/experiments/{id}")).await;
        if s["counts"]["total"].as_u64().unwrap_or(0) >= 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no progress before the broker loss"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The broker goes away mid-experiment and comes back.
    rabbit.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    rabbit.start();

    let done = env.wait_done(&id, 600).await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(done["counts"]["total"], 20);
    assert_eq!(done["counts"]["running"], 0);
    let trials = env
        .api
        .get_ok(&format!(
            "/experiments/{id}/trials?fields=number,job_id,state"
        ))
        .await;
    for t in trials.as_array().unwrap() {
        let job = env
            .api
            .get_ok(&format!("/jobs/{}", t["job_id"].as_str().unwrap()))
            .await;
        assert!(
            job["state"] == "succeeded" || job["state"] == "pruned",
            "{job}"
        );
        assert_eq!(
            job["result_attempt"], job["attempt"],
            "one recorded result per job: {job}"
        );
    }
    env.cleanup().await;
}
