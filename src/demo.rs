//! `tracseq-ml demo`: the whole platform on synthetic lab data, through its
//! own HTTP API — upload, AutoML with progress, leaderboard, registry,
//! serving, and one real prediction.

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

    let features = tracseq_learn::lab::example_record(args.seed + 1);
    let pred = call(
        http.post(format!("{base}/predict"))
            .json(&json!({"model": model, "features": features})),
    )
    .await?;
    let q = &pred["quality"];
    println!("\n5. POST /predict for one incoming sample:");
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
    println!(
        "\nDone in {:.1} s. Run `tracseq-ml up` to keep the API serving this model.",
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
