//! What choosing the answering version costs inside `/predict`, measured
//! in process on the api's own `ModelCache` (the code every `/predict`
//! request runs): a request without a version (the deployed one), pinned to
//! a version, and by alias, beside one prediction of the same record by
//! the same model for scale. Alternating rounds, the median per call.
//! Prints a Markdown table.
//!
//! The HTTP-level comparison (throughput with and without a version, and
//! against the build before deployed-version serving) is `bench/predict.sh`;
//! on a small shared machine its rounds vary more than this cost, which is
//! why it is measured here as well.

use chrono::Utc;
use clap::Parser;
use std::time::Instant;
use tracseq_api::serving::{ModelCache, Pick};
use tracseq_core::ids::TokenId;
use tracseq_core::lifecycle::deployment::{Deployment, DeploymentState, NewDeployment, Target};
use tracseq_core::lifecycle::RetryPolicy;
use tracseq_core::ports::{ArtifactPath, DeploymentWrite};
use tracseq_core::registry::{apply, Change};
use tracseq_core::security::Actor;
use tracseq_core::types::NewModelVersion;

#[derive(Parser, Debug)]
#[command(about = "Cost of resolving the answering version (a Markdown table on stdout)")]
struct Args {
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Calls per measurement.
    #[arg(long, default_value_t = 200_000)]
    calls: u32,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let p = tracseq_backends::platform::in_memory(RetryPolicy::default());
    let bytes = bytes::Bytes::from(tracseq_learn::lab::example_artifact_bytes(500, 3)?);
    let path = ArtifactPath::model("sq", 1, "model.json")?;
    p.artifacts.put(&path, bytes.clone()).await?;
    let new = NewModelVersion {
        name: "sq".into(),
        version: 1,
        job_id: None,
        family: "linear".into(),
        experiment_id: None,
        artifact_path: path.to_string(),
        sha256: tracseq_learn::artifact::sha256_hex(&bytes),
        metrics: Default::default(),
        params: Default::default(),
        target: tracseq_learn::lab::TARGET.into(),
        owner: None,
        description: None,
        lineage: Default::default(),
        tags: Default::default(),
    };
    p.state.register_model_version(new, Utc::now()).await?;
    // An alias, and a live platform deployment of version 1.
    let mut slots = p.registry.model_slots("sq").await?;
    let change = Change::SetAlias {
        alias: "champion".into(),
        version: 1,
    };
    apply(&mut slots, change).map_err(|e| anyhow::anyhow!("{e}"))?;
    let write = tracseq_core::ports::RegistryWrite {
        slots,
        history: vec![],
        promotion: None,
    };
    anyhow::ensure!(p.registry.commit_registry(write).await?, "alias not stored");
    let mut d = Deployment::new(
        NewDeployment {
            model: "sq".into(),
            version: 1,
            target: Target::Platform,
            replicas: 1,
            resources: None,
            job_id: None,
            requested_by: Actor {
                id: TokenId::new(),
                name: "bench".into(),
            },
            traffic: None,
        },
        Utc::now(),
    );
    d.state = DeploymentState::Live;
    let write = DeploymentWrite {
        inserts: vec![d],
        ..Default::default()
    };
    anyhow::ensure!(
        p.registry.commit_deployments(write).await?,
        "deployment not stored"
    );

    let cache = ModelCache::default();
    cache.refresh_deployments(&p).await?;
    let record = tracseq_learn::lab::example_record(3);
    let picks = [
        ("no version: the deployed one", Pick::Serving),
        ("pinned: \"version\": 1", Pick::Version(1)),
        ("alias: \"champion\"", Pick::Alias("champion")),
    ];
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); picks.len() + 1];
    for round in 0..args.rounds {
        for i in 0..picks.len() {
            // Rotate the order each round so drift falls on all alike.
            let (i, (_, pick)) = {
                let j = (i + round) % picks.len();
                (j, picks[j])
            };
            let start = Instant::now();
            for _ in 0..args.calls {
                let m = cache.get(&p, "sq", pick).await?;
                std::hint::black_box(&m);
            }
            ns[i].push(start.elapsed().as_nanos() as f64 / f64::from(args.calls));
        }
        let model = cache.get(&p, "sq", Pick::Version(1)).await?;
        let calls = (args.calls / 20).max(1);
        let start = Instant::now();
        for _ in 0..calls {
            let out = model.artifact.predict(std::slice::from_ref(&record))?;
            std::hint::black_box(out);
        }
        ns[picks.len()].push(start.elapsed().as_nanos() as f64 / f64::from(calls));
    }
    let predict = median(ns[picks.len()].clone());
    println!("| request names | ns per resolution (median of {} rounds) | share of one prediction ({predict:.0} ns) |", args.rounds);
    println!("|---|---:|---:|");
    for (i, (label, _)) in picks.iter().enumerate() {
        let m = median(ns[i].clone());
        println!("| {label} | {m:.0} | {:.2}% |", 100.0 * m / predict);
    }
    Ok(())
}
