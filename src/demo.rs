//! `tracseq-ml demo`: the whole platform on synthetic lab data, through its
//! own HTTP API — upload, AutoML with progress, leaderboard, registry, and
//! the lifecycle as two people run it: promotion, approval, deploy,
//! prediction, a retrained version deployed, rollback, and outcomes
//! reported for logged predictions with the live metric they give.

use crate::embedded::Running;
use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tracseq_core::config::Config;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Trials in the AutoML search.
    #[arg(long, default_value_t = 20)]
    pub trials: u64,
    /// Trials running at once.
    #[arg(long, default_value_t = 2)]
    pub parallelism: u32,
    /// Seed for the data, the sampler and cross-validation.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Rows of synthetic sample data.
    #[arg(long, default_value_t = 2000)]
    pub rows: usize,
}

pub async fn run(mut cfg: Config, args: &DemoArgs) -> anyhow::Result<()> {
    if args.trials == 0 || args.parallelism == 0 || args.rows < 50 {
        bail!("--trials and --parallelism must be at least 1 and --rows at least 50");
    }
    // Enough workers to run the requested parallelism.
    cfg.worker.count = cfg.worker.count.max(args.parallelism as usize);
    let running = Running::embedded(&cfg, SocketAddr::new(cfg.api.host, 0)).await?;
    let addr = running
        .addr
        .ok_or_else(|| anyhow::anyhow!("the api did not start"))?;
    let result = drive(addr, &cfg, args).await;
    running.shutdown().await;
    result
}

async fn drive(addr: SocketAddr, cfg: &Config, args: &DemoArgs) -> anyhow::Result<()> {
    let base = format!("http://{addr}");
    // The admin token the first start left in the data directory.
    let token = crate::security_cli::read_admin_token(&cfg.data_dir)?;
    let mut headers = reqwest::header::HeaderMap::new();
    let mut auth = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
        .context("the admin token file holds no valid token")?;
    auth.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, auth);
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .build()?;
    println!(
        "TracSeq ML demo — embedded platform at {base}, data in {}",
        cfg.data_dir.display()
    );

    let csv = tracseq_learn::lab::generate_csv(args.rows, args.seed);
    let ds = call(
        http.post(format!("{base}/datasets?name=lab-samples"))
            .header("content-type", "text/csv")
            .body(csv),
    )
    .await?;
    println!(
        "1. generated {} lab samples (18 engineered features + quality_score), uploaded as dataset {}",
        ds["rows"], ds["id"].as_str().unwrap_or("?")
    );

    let body = json!({
        "name": format!("sample-quality-seed{}", args.seed),
        "dataset_id": ds["id"],
        "target": tracseq_learn::lab::TARGET,
        "budget": {"trials": args.trials},
        "parallelism": args.parallelism,
        "seed": args.seed,
        "model_name": "sample-quality",
    });
    let exp = call(http.post(format!("{base}/experiments")).json(&body)).await?;
    let id = exp["id"].as_str().context("experiment id")?.to_string();
    let metric = exp["spec"]["metric"]
        .as_str()
        .unwrap_or("metric")
        .to_string();
    println!(
        "2. AutoML experiment {id}: {} trials, parallelism {}, optimising {metric}",
        args.trials, args.parallelism
    );

    let bar = ProgressBar::new(args.trials);
    bar.set_style(
        ProgressStyle::with_template(
            "   [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} trials  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let summary = loop {
        let s = call(http.get(format!("{base}/experiments/{id}"))).await?;
        let c = &s["counts"];
        let done = c["complete"].as_u64().unwrap_or(0)
            + c["pruned"].as_u64().unwrap_or(0)
            + c["failed"].as_u64().unwrap_or(0);
        bar.set_position(done);
        if let Some(v) = s["best_trial"]["value"].as_f64() {
            bar.set_message(format!("best {metric} {v:.4}  (pruned {})", c["pruned"]));
        }
        match s["state"].as_str() {
            Some("completed") => break s,
            Some("failed") | Some("cancelled") => {
                bar.abandon();
                bail!("experiment {}: {}", s["state"], s["error"]);
            }
            _ => {}
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("experiment did not finish within 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    bar.finish();

    let trials = call(http.get(format!("{base}/experiments/{id}/trials?sort=value&state=complete&limit=10&fields=number,value,params"))).await?;
    println!(
        "\n3. Leaderboard (top 10 of {} complete; {} pruned)",
        summary["counts"]["complete"], summary["counts"]["pruned"]
    );
    println!(
        "   {:>4}  {:>5}  {:<7} {:>10}  params",
        "rank", "trial", "family", metric
    );
    for (rank, t) in trials.as_array().into_iter().flatten().enumerate() {
        let params = t["params"].as_object().cloned().unwrap_or_default();
        let family = params
            .get("family")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        let rest: Vec<String> = params
            .iter()
            .filter(|(k, _)| k.as_str() != "family")
            .map(|(k, v)| match v.as_f64() {
                Some(f) if v.is_f64() => {
                    format!("{}={:.4}", k.split_once('_').map_or(k.as_str(), |x| x.1), f)
                }
                _ => format!("{}={}", k.split_once('_').map_or(k.as_str(), |x| x.1), v),
            })
            .collect();
        println!(
            "   {:>4}  {:>5}  {:<7} {:>10.4}  {}",
            rank + 1,
            t["number"].as_u64().unwrap_or(0),
            family,
            t["value"].as_f64().unwrap_or(f64::NAN),
            rest.join(" ")
        );
    }

    let model = summary["model_name"]
        .as_str()
        .context("model name")?
        .to_string();
    let version = summary["model_version"].as_u64().context("model version")?;
    let mv = call(http.get(format!("{base}/models/{model}"))).await?;
    let this = mv["versions"]
        .as_array()
        .and_then(|v| v.iter().find(|x| x["version"].as_u64() == Some(version)))
        .cloned()
        .unwrap_or_default();
    println!(
        "\n4. Registered model '{model}' version {version} ({}), cross-validated {metric} {:.4}, sha256 {}…",
        this["family"].as_str().unwrap_or("?"),
        this["metrics"][&metric].as_f64().unwrap_or(f64::NAN),
        this["sha256"].as_str().unwrap_or("").chars().take(12).collect::<String>()
    );

    // The lifecycle, as a lab runs it: two people, two tokens.
    let scientist = Client::new(&http, &base, "demo-scientist", "scientist").await?;
    let approver = Client::new(&http, &base, "demo-approver", "approver").await?;
    println!(
        "\n5. Lifecycle: tokens for '{}' (role scientist) and '{}' (role approver)",
        scientist.name, approver.name
    );
    let features = tracseq_learn::lab::example_record(args.seed + 1);
    let unpinned = json!({"model": model, "features": features});
    let refused = scientist
        .http
        .post(format!("{base}/predict"))
        .json(&unpinned)
        .send()
        .await?;
    println!(
        "   POST /predict without a version before any deploy: {} (a new version is never served by surprise)",
        refused.status()
    );
    release(&scientist, &approver, &model, version, &metric).await?;
    let first = deploy(&scientist, &model, version).await?;
    let pred = until_serving(&scientist, &unpinned, version).await?;
    let q = &pred["quality"];
    println!(
        "\n6. POST /predict for one incoming sample, answered by the deployed version {}:",
        pred["version"]
    );
    println!(
        "   quality score {:.1} / 100 — category {}",
        q["score"].as_f64().unwrap_or(f64::NAN),
        q["category"].as_str().unwrap_or("?")
    );
    println!("   top risk factors (from the model's own contributions):");
    for r in q["risk_factors"].as_array().into_iter().flatten() {
        println!(
            "     - {} = {} (impact {:+.2} points): {}",
            r["feature"].as_str().unwrap_or("?"),
            r["value"],
            r["impact"].as_f64().unwrap_or(0.0),
            r["description"].as_str().unwrap_or("")
        );
    }
    println!("   recommendations:");
    for r in q["recommendations"].as_array().into_iter().flatten() {
        println!("     - {}", r.as_str().unwrap_or(""));
    }

    // A second experiment (another seed) registers the next version.
    let retrain = json!({
        "name": format!("sample-quality-seed{}-retrain", args.seed),
        "dataset_id": ds["id"],
        "target": tracseq_learn::lab::TARGET,
        "budget": {"trials": (args.trials / 4).max(2)},
        "parallelism": args.parallelism,
        "seed": args.seed + 1,
        "model_name": model,
    });
    let exp2 = call(
        scientist
            .http
            .post(format!("{base}/experiments"))
            .json(&retrain),
    )
    .await?;
    let id2 = exp2["id"].as_str().context("experiment id")?.to_string();
    let done2 = wait_settled(&scientist, &id2).await?;
    let version2 = done2["model_version"].as_u64().context("model version")?;
    println!(
        "\n7. A second experiment ({} trials, seed {}) registered version {version2} (best {metric} {:.4})",
        done2["counts"]["total"],
        args.seed + 1,
        done2["best_trial"]["value"].as_f64().unwrap_or(f64::NAN)
    );
    release(&scientist, &approver, &model, version2, &metric).await?;
    let second = deploy(&scientist, &model, version2).await?;
    let pred2 = until_serving(&scientist, &unpinned, version2).await?;
    println!(
        "   POST /predict now answers from version {} (quality score {:.1}); deployment {first} is superseded",
        pred2["version"],
        pred2["quality"]["score"].as_f64().unwrap_or(f64::NAN)
    );

    let rolled = call(
        scientist
            .http
            .post(format!("{base}/deployments/{second}/rollback"))
            .json(&json!({"reason": "demo: back to the reviewed version"})),
    )
    .await?;
    let back = until_serving(&scientist, &unpinned, version).await?;
    println!(
        "\n8. POST /deployments/{second}/rollback (no new approval): deployment {}; /predict answers from version {} again (quality score {:.1})",
        rolled["state"].as_str().unwrap_or("?"),
        back["version"],
        back["quality"]["score"].as_f64().unwrap_or(f64::NAN)
    );
    let history = call(scientist.http.get(format!("{base}/models/{model}/history"))).await?;
    println!("   GET /models/{model}/history:");
    for h in history["entries"].as_array().into_iter().flatten() {
        println!(
            "     - {}  {}  asked by {}{}",
            h["at"]
                .as_str()
                .unwrap_or("?")
                .chars()
                .take(19)
                .collect::<String>(),
            h["change"],
            h["requested_by"]["name"].as_str().unwrap_or("-"),
            h["approved_by"]["name"]
                .as_str()
                .map(|a| format!(", approved by {a}"))
                .unwrap_or_default()
        );
    }
    outcomes(&scientist, &model, args.seed).await?;
    println!(
        "\nDone in {:.1} s. Run `tracseq-ml up` to keep the API serving the deployed version.",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn call(req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
    let resp = req.send().await.context("calling the api")?;
    let status = resp.status();
    let body: Value = resp.json().await.context("reading the api's answer")?;
    if !status.is_success() {
        bail!(
            "api answered {status}: {}",
            body["message"].as_str().unwrap_or(&body.to_string())
        );
    }
    Ok(body)
}

/// A client holding its own token: one person in the walk-through.
struct Client {
    name: String,
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// Has the admin create a token named `name` with `role`.
    async fn new(
        admin: &reqwest::Client,
        base: &str,
        name: &str,
        role: &str,
    ) -> anyhow::Result<Client> {
        let issued = call(
            admin
                .post(format!("{base}/tokens"))
                .json(&json!({"name": name, "role": role, "expires": "1d"})),
        )
        .await?;
        let secret = issued["token"].as_str().context("the issued token")?;
        let mut headers = reqwest::header::HeaderMap::new();
        let mut auth = reqwest::header::HeaderValue::from_str(&format!("Bearer {secret}"))?;
        auth.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, auth);
        Ok(Client {
            name: name.to_string(),
            http: reqwest::Client::builder()
                .default_headers(headers)
                .build()?,
            base: base.to_string(),
        })
    }
}

/// The scientist asks for production; the approver (another identity)
/// approves, after the scientist's own approval is refused.
async fn release(
    scientist: &Client,
    approver: &Client,
    model: &str,
    version: u64,
    metric: &str,
) -> anyhow::Result<()> {
    let base = &scientist.base;
    let ask = call(
        scientist
            .http
            .post(format!("{base}/models/promote"))
            .json(&json!({
                "name": model, "version": version, "stage": "production",
                "reason": format!("AutoML winner on {metric}"),
            })),
    )
    .await?;
    let id = ask["id"].as_str().context("promotion id")?;
    println!(
        "   {} asks: version {version} -> production (request {id}, {})",
        scientist.name,
        ask["state"].as_str().unwrap_or("?")
    );
    let own = scientist
        .http
        .post(format!("{base}/promotions/{id}/approve"))
        .send()
        .await?;
    let decided = call(
        approver
            .http
            .post(format!("{base}/promotions/{id}/approve"))
            .json(&json!({"reason": "metrics and folds reviewed"})),
    )
    .await?;
    println!(
        "   {} approving their own request: {}; {} approves: {}",
        scientist.name,
        own.status(),
        approver.name,
        decided["state"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// Deploys `version` to the platform and waits for the deploy job to make
/// it live; returns the deployment's id.
async fn deploy(who: &Client, model: &str, version: u64) -> anyhow::Result<String> {
    let base = &who.base;
    let started = call(
        who.http
            .post(format!("{base}/models/deploy"))
            .json(&json!({"name": model, "version": version, "target": "platform"})),
    )
    .await?;
    let id = started["deployment"]["id"]
        .as_str()
        .context("deployment id")?
        .to_string();
    let waited = Instant::now();
    loop {
        let d = call(who.http.get(format!("{base}/deployments/{id}"))).await?;
        match d["state"].as_str() {
            Some("live") => break,
            Some("failed") => bail!("deployment {id} failed: {}", d["error"]),
            _ if waited.elapsed() > Duration::from_secs(120) => {
                bail!("deployment {id} is not live after 120 s")
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    println!(
        "   POST /models/deploy: deployment {id} of version {version} is live after {:.1} s (its deploy job ran on a worker)",
        waited.elapsed().as_secs_f64()
    );
    Ok(id)
}

/// Samples whose quality the demo's lab measures after predicting it.
const MEASURED_SAMPLES: u64 = 40;

/// The lab predicts incoming samples by their ids, measures them later and
/// reports each outcome; the live RMSE then comes from those outcomes.
async fn outcomes(who: &Client, model: &str, seed: u64) -> anyhow::Result<()> {
    let mut measured = Vec::new();
    for i in 0..MEASURED_SAMPLES {
        let (features, quality) = tracseq_learn::lab::example_sample(seed * 1_000 + i);
        let entity = format!("S-{seed}-{i:04}");
        let body = json!({"model": model, "entity_id": entity, "features": features});
        call(who.http.post(format!("{}/predict", who.base)).json(&body)).await?;
        measured.push((entity, quality));
    }
    // The log is written behind the answers (within serving.log_flush_ms).
    let waited = Instant::now();
    for (entity, quality) in &measured {
        let report = json!({"entity_id": entity, "model": model, "actual": quality});
        loop {
            let resp = who
                .http
                .post(format!("{}/feedback", who.base))
                .json(&report)
                .send()
                .await?;
            if resp.status() != reqwest::StatusCode::NOT_FOUND {
                resp.error_for_status()?;
                break;
            }
            if waited.elapsed() > Duration::from_secs(30) {
                bail!("the prediction for {entity} was not logged within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let live = call(who.http.get(format!("{}/models/{model}/live", who.base))).await?;
    println!(
        "\n9. {MEASURED_SAMPLES} samples predicted by sample id, measured by the lab and reported (POST /feedback):"
    );
    for arm in live["variants"].as_array().into_iter().flatten() {
        if arm["outcomes"].as_u64() == Some(0) {
            println!(
                "   GET /models/{model}/live: version {} ({}): {} predictions, no outcomes reported yet",
                arm["version"],
                arm["variant"].as_str().unwrap_or("?"),
                arm["predictions"]
            );
            continue;
        }
        let rmse = &arm["metrics"][0];
        println!(
            "   GET /models/{model}/live: version {} ({}): {} predictions, {} outcomes, live RMSE {:.2} (95% CI {:.2} to {:.2})",
            arm["version"],
            arm["variant"].as_str().unwrap_or("?"),
            arm["predictions"],
            arm["outcomes"],
            rmse["value"].as_f64().unwrap_or(f64::NAN),
            rmse["ci95"][0].as_f64().unwrap_or(f64::NAN),
            rmse["ci95"][1].as_f64().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}

/// Asks `/predict` without a version until the answer comes from `version`
/// (each api replica swaps within `api.deployment_poll_ms`).
async fn until_serving(who: &Client, body: &Value, version: u64) -> anyhow::Result<Value> {
    let waited = Instant::now();
    loop {
        let pred = call(who.http.post(format!("{}/predict", who.base)).json(body)).await?;
        if pred["version"].as_u64() == Some(version) {
            return Ok(pred);
        }
        if waited.elapsed() > Duration::from_secs(30) {
            bail!(
                "/predict still answers from version {} after 30 s",
                pred["version"]
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_settled(who: &Client, id: &str) -> anyhow::Result<Value> {
    let waited = Instant::now();
    loop {
        let s = call(who.http.get(format!("{}/experiments/{id}", who.base))).await?;
        match s["state"].as_str() {
            Some("completed") => return Ok(s),
            Some("failed") | Some("cancelled") => {
                bail!("experiment {}: {}", s["state"], s["error"])
            }
            _ if waited.elapsed() > Duration::from_secs(1800) => {
                bail!("experiment did not finish within 30 minutes")
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}
