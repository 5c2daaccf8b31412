//! Helpers for end-to-end tests: start the real binary, call its API; and
//! (in `fleet`) the scheduler and workers in process on the memory backends.

#![allow(dead_code)]

pub mod distributed;
pub mod fleet;

use serde_json::{json, Value};
use std::net::TcpListener;
use std::ops::Deref;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Checks a prediction for one record: a finite value, explained by its
/// quality category and the features' contributions.
pub fn assert_explained_prediction(pred: &Value) {
    let value = pred["value"].as_f64().unwrap();
    assert!(value.is_finite(), "{pred}");
    assert!(pred["quality"]["category"].is_string(), "{pred}");
    assert!(!pred["contributions"].as_array().unwrap().is_empty());
}

/// The HTTP API at `base`. Each call answers the status and the JSON body
/// (`Null` when the body is not JSON); the `_ok` calls must succeed. Every
/// request, `http`'s own included, carries the bearer token it was made with.
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    pub token: Option<String>,
}

impl Api {
    /// A client that sends no token: only `/health` answers it.
    pub fn new(base: String) -> Api {
        Api {
            base,
            http: reqwest::Client::new(),
            token: None,
        }
    }

    /// A client that sends `Authorization: Bearer <token>` on every request.
    pub fn with_token(base: String, token: &str) -> Api {
        let mut headers = reqwest::header::HeaderMap::new();
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .expect("token is a header value");
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
        Api {
            base,
            http: reqwest::Client::builder()
                .default_headers(headers)
                .build()
                .expect("http client"),
            token: Some(token.to_string()),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> (u16, Value) {
        let r = request.send().await.expect(what);
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let request = self.http.get(format!("{}{path}", self.base));
        self.send(request, "GET").await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, body.to_string().into_bytes(), "application/json")
            .await
    }

    pub async fn post_raw(&self, path: &str, body: Vec<u8>, content_type: &str) -> (u16, Value) {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body);
        self.send(request, "POST").await
    }

    /// `GET path`, which must succeed: its body.
    pub async fn get_ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert!((200..300).contains(&status), "GET {path}: {status} {body}");
        body
    }

    /// `POST path`, which must succeed: its body.
    pub async fn post_ok(&self, path: &str, body: Vec<u8>, content_type: &str) -> Value {
        let (status, body) = self.post_raw(path, body, content_type).await;
        assert!((200..300).contains(&status), "POST {path}: {status} {body}");
        body
    }

    /// Waits until `/health` answers a success.
    pub async fn wait_healthy(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = self.http.get(format!("{}/health", self.base)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "server did not become healthy");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls `GET path` until `done(body)` or the timeout.
    pub async fn wait_for(
        &self,
        path: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, body) = self.get(path).await;
            assert_eq!(status, 200, "{path}: {body}");
            if done(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting on {path}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Uploads `rows` rows of the lab data (generated from `seed`) as the
    /// data set `lab`: its record.
    pub async fn upload_lab(&self, rows: usize, seed: u64) -> Value {
        let csv = tracseq_learn::lab::generate_csv(rows, seed);
        let (status, ds) = self
            .post_raw("/datasets?name=lab", csv.into_bytes(), "text/csv")
            .await;
        assert_eq!(status, 201, "{ds}");
        ds
    }

    /// Creates an experiment, which must be accepted: its id and record.
    pub async fn create_experiment(&self, spec: &Value) -> (String, Value) {
        let (status, exp) = self.post_json("/experiments", spec).await;
        assert_eq!(status, 201, "{exp}");
        (exp["id"].as_str().unwrap().to_string(), exp)
    }

    /// Waits until the experiment is neither running nor finalizing: its
    /// summary.
    pub async fn wait_settled(&self, id: &str, timeout: Duration) -> Value {
        self.wait_for(&format!("/experiments/{id}"), timeout, |b| {
            b["state"] != "running" && b["state"] != "finalizing"
        })
        .await
    }

    /// Asks the experiment for a trial, which must be handed out: the trial.
    pub async fn ask(&self, id: &str) -> Value {
        let (status, asked) = self
            .post_json(&format!("/experiments/{id}/ask"), &json!({}))
            .await;
        assert_eq!(status, 201, "{asked}");
        asked
    }

    /// Asks `model` for a prediction (`request` names the model, the
    /// features and maybe a version), which must be given: the prediction.
    pub async fn predict(&self, request: &Value) -> Value {
        let (status, pred) = self.post_json("/predict", request).await;
        assert_eq!(status, 200, "{request}: {pred}");
        pred
    }

    /// Tells the result `body` of trial `n`.
    pub async fn tell(&self, id: &str, n: u64, body: &Value) -> (u16, Value) {
        self.post_json(&format!("/experiments/{id}/trials/{n}/tell"), body)
            .await
    }
}

/// `tracseq-ml up` running as a child process, and its API.
pub struct Server {
    pub child: Child,
    pub api: Api,
    /// The data dir, when the server was given a temporary one of its own.
    temp_dir: Option<tempfile::TempDir>,
}

impl Deref for Server {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Server {
    /// Starts `tracseq-ml up` on a free port over `data_dir`, waits for
    /// `/health` and calls with the admin token the first start wrote to
    /// `<data_dir>/admin.token`.
    pub async fn start(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        Server::start_logging(data_dir, env, Stdio::inherit()).await
    }

    /// As [`Server::start`], with the server's log (its stderr) sent to `log`.
    pub async fn start_logging(data_dir: &Path, env: &[(&str, &str)], log: Stdio) -> Server {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tracseq-ml"));
        cmd.args(["up", "--port", &port.to_string(), "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn,warp::filters::trace=error")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start tracseq-ml up");
        let base = format!("http://127.0.0.1:{port}");
        let mut server = Server {
            child,
            api: Api::new(base.clone()),
            temp_dir: None,
        };
        server.wait_healthy(Duration::from_secs(30)).await;
        let token = std::fs::read_to_string(data_dir.join("admin.token"))
            .expect("the first start writes <data_dir>/admin.token");
        server.api = Api::with_token(base, token.trim());
        server
    }

    /// Starts `tracseq-ml up` over a fresh temporary data dir, removed with
    /// the server.
    pub async fn start_fresh(env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Server::start(dir.path(), env).await;
        server.temp_dir = Some(dir);
        server
    }

    /// Starts over a fresh temporary data dir and uploads `rows` rows of the
    /// lab data (generated from `seed`): the server and the data set's record.
    pub async fn start_with_lab(rows: usize, seed: u64) -> (Server, Value) {
        let server = Server::start_fresh(&[]).await;
        let ds = server.upload_lab(rows, seed).await;
        (server, ds)
    }

    /// SIGTERM, then wait: the process must drain and exit 0.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -TERM {pid}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "tracseq-ml exited with {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "tracseq-ml did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
