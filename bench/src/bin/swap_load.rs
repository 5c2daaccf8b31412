//! Hot-swap load: `/predict` without a version against several api
//! replicas, first with nothing changing (steady), then while the model's
//! platform deployment swaps between two versions again and again (a deploy
//! of the candidate, then a rollback), through the platform's own API.
//!
//! Every answer is checked: a non-2xx status, a transport error or an answer
//! without a version counts as an error. Latency is measured per request
//! (send to full body) and reported per phase. Prints one JSON object.
//!
//! The platform (replicas, scheduler, workers, a model with two versions,
//! an admin and an approver token) is set up by `bench/hot-swap.sh`.

use clap::Parser;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "/predict under a hot swap between two versions (one JSON line on stdout)")]
struct Args {
    /// Base URL of an api replica (repeat for each).
    #[arg(long = "url", required_unless_present = "delete_queues_of")]
    urls: Vec<String>,
    /// A token with the scientist or admin role (predicts, deploys, rolls back).
    #[arg(long, default_value = "")]
    token: String,
    /// A token with the approver role.
    #[arg(long, default_value = "")]
    approver_token: String,
    #[arg(long, default_value = "")]
    model: String,
    /// The version deployed at the start (and after each rollback).
    #[arg(long, default_value_t = 1)]
    base_version: u64,
    /// The version each swap deploys.
    #[arg(long, default_value_t = 2)]
    candidate_version: u64,
    /// A JSON file with the sample's features.
    #[arg(long, required_unless_present = "delete_queues_of")]
    features: Option<std::path::PathBuf>,
    /// Instead of a run: delete the queues and exchanges of this platform
    /// prefix (`distributed.amqp_prefix`) from the broker at --amqp-url.
    #[arg(long)]
    delete_queues_of: Option<String>,
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp_url: String,
    /// Concurrent requests in flight, spread over the replicas.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Seconds of each phase.
    #[arg(long, default_value_t = 15)]
    phase_secs: u64,
}

#[derive(Default)]
struct Phase {
    latencies_us: Vec<u64>,
    errors: u64,
    first_errors: Vec<String>,
    versions: BTreeMap<u64, u64>,
}

impl Phase {
    fn merge(&mut self, o: Phase) {
        self.latencies_us.extend(o.latencies_us);
        self.errors += o.errors;
        self.first_errors.extend(
            o.first_errors
                .into_iter()
                .take(5 - self.first_errors.len().min(5)),
        );
        for (v, n) in o.versions {
            *self.versions.entry(v).or_default() += n;
        }
    }

    fn report(mut self, secs: f64) -> Value {
        self.latencies_us.sort_unstable();
        let n = self.latencies_us.len();
        let pct = |q: f64| -> f64 {
            if n == 0 {
                return f64::NAN;
            }
            let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
            self.latencies_us[i] as f64 / 1000.0
        };
        json!({
            "requests": n,
            "requests_per_s": n as f64 / secs,
            "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99),
            "max_ms": self.latencies_us.last().map(|m| *m as f64 / 1000.0),
            "errors": self.errors,
            "first_errors": self.first_errors,
            "answers_by_version": self.versions,
        })
    }
}

/// One connection's loop: requests until `stop`, alternating nothing (each
/// loop has its replica).
async fn hammer(http: reqwest::Client, url: String, body: Value, stop: Arc<AtomicBool>) -> Phase {
    let mut p = Phase::default();
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        let answer = match http.post(&url).json(&body).send().await {
            Ok(r) => {
                let status = r.status();
                match r.bytes().await {
                    Ok(b) if status.is_success() => {
                        let v: Value = serde_json::from_slice(&b).unwrap_or_default();
                        v["version"]
                            .as_u64()
                            .ok_or_else(|| format!("200 without a version: {v}"))
                    }
                    Ok(b) => Err(format!("{status}: {}", String::from_utf8_lossy(&b))),
                    Err(e) => Err(e.to_string()),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        p.latencies_us
            .push(u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX));
        match answer {
            Ok(v) => *p.versions.entry(v).or_default() += 1,
            Err(e) => {
                p.errors += 1;
                if p.first_errors.len() < 5 {
                    p.first_errors.push(e);
                }
            }
        }
    }
    p
}

/// Runs the load for `secs` while `during` runs alongside; answers the
/// merged phase and what `during` returned.
async fn phase<F: std::future::Future<Output = anyhow::Result<u64>>>(
    args: &Args,
    http: &reqwest::Client,
    body: &Value,
    during: F,
) -> anyhow::Result<(Phase, f64, u64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let loops: Vec<_> = (0..args.connections)
        .map(|i| {
            let url = format!("{}/predict", args.urls[i % args.urls.len()]);
            tokio::spawn(hammer(http.clone(), url, body.clone(), stop.clone()))
        })
        .collect();
    let deadline = started + Duration::from_secs(args.phase_secs);
    let swaps = during.await?;
    tokio::time::sleep_until(deadline.into()).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Phase::default();
    for l in loops {
        all.merge(l.await?);
    }
    Ok((all, started.elapsed().as_secs_f64(), swaps))
}

struct Control<'a> {
    http: &'a reqwest::Client,
    base: &'a str,
    token: &'a str,
    approver: &'a str,
    model: &'a str,
}

impl Control<'_> {
    async fn call(&self, token: &str, path: &str, body: Value) -> anyhow::Result<Value> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await?;
        anyhow::ensure!(status.is_success(), "POST {path}: {status} {v}");
        Ok(v)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(self.token)
            .send()
            .await?;
        Ok(r.error_for_status()?.json().await?)
    }

    async fn wait_live(&self, id: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let d = self.get(&format!("/deployments/{id}")).await?;
            match d["state"].as_str() {
                Some("live") => return Ok(()),
                Some("failed") => anyhow::bail!("deployment {id} failed: {}", d["error"]),
                _ => {}
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "deployment {id} not live in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Promotes and deploys the candidate, waits until live, then rolls it
    /// back and waits until the base deployment is live again.
    async fn swap_and_back(&self, candidate: u64) -> anyhow::Result<()> {
        let ask = self
            .call(
                self.token,
                "/models/promote",
                json!({"name": self.model, "version": candidate, "stage": "production", "reason": "hot-swap bench"}),
            )
            .await?;
        let id = ask["id"].as_str().unwrap_or_default();
        self.call(
            self.approver,
            &format!("/promotions/{id}/approve"),
            json!({}),
        )
        .await?;
        let d = self
            .call(
                self.token,
                "/models/deploy",
                json!({"name": self.model, "version": candidate}),
            )
            .await?;
        let id = d["deployment"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.wait_live(&id).await?;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let rolled = self
            .call(
                self.token,
                &format!("/deployments/{id}/rollback"),
                json!({"reason": "hot-swap bench"}),
            )
            .await?;
        if let Some(prev) = rolled["previous"]["id"].as_str() {
            self.wait_live(prev).await?;
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(prefix) = &args.delete_queues_of {
        return delete_queues(&args.amqp_url, prefix).await;
    }
    let features = args.features.as_ref().expect("clap requires --features");
    let features: Value = serde_json::from_slice(&std::fs::read(features)?)?;
    let body = json!({"model": args.model, "features": features});
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", args.token).parse()?,
    );
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(args.connections)
        .build()?;
    let control = Control {
        http: &http,
        base: &args.urls[0],
        token: &args.token,
        approver: &args.approver_token,
        model: &args.model,
    };
    let (steady, steady_s, _) = phase(&args, &http, &body, async { Ok(0) }).await?;
    let deadline = Instant::now() + Duration::from_secs(args.phase_secs);
    let swapping = async {
        let mut swaps = 0;
        // Each cycle is two swaps (to the candidate, and back); start one
        // only while it can finish inside the phase.
        while Instant::now() + Duration::from_secs(5) < deadline {
            control.swap_and_back(args.candidate_version).await?;
            swaps += 2;
        }
        Ok(swaps)
    };
    let (swap, swap_s, swaps) = phase(&args, &http, &body, swapping).await?;
    let out = json!({
        "replicas": args.urls.len(),
        "connections": args.connections,
        "phase_secs": args.phase_secs,
        "base_version": args.base_version,
        "candidate_version": args.candidate_version,
        "steady": steady.report(steady_s),
        "swapping": swap.report(swap_s),
        "swaps": swaps,
    });
    println!("{out}");
    Ok(())
}

/// Removes a finished run's queues and exchanges (they are durable).
async fn delete_queues(url: &str, prefix: &str) -> anyhow::Result<()> {
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    for q in ["cpu", "gpu", "dead"] {
        let name = format!("{prefix}.jobs.{q}");
        ch.queue_delete(name.as_str().into(), Default::default())
            .await?;
    }
    for x in ["jobs", "jobs.dlx"] {
        let name = format!("{prefix}.{x}");
        ch.exchange_delete(name.as_str().into(), Default::default())
            .await?;
    }
    conn.close(0, "bench done".into()).await?;
    Ok(())
}
