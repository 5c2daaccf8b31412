//! Point-in-time join at scale through the feature store's offline engine
//! (`tracseq_features::offline::OfflineStore`; no route calls it yet, so
//! this measures the engine, not an HTTP request): writes `--values` generated feature
//! values as Parquet into a local directory, then joins `--rows` entity rows
//! with `--features` features, and prints wall times, peak memory and bytes
//! per stored value as JSON.
//!
//! Data: `--entities` entities; each feature's values spread uniformly over
//! entities and over 365 days of event time, ingested when they happened;
//! rows pick a random entity and a random time in the same year. Seeded:
//! the same arguments give the same tables.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use object_store::local::LocalFileSystem;
use serde_json::json;
use tracseq_features::definition::ValueType;
use tracseq_features::offline::{JoinFeature, OfflineStore, ValueRow};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000_000)]
    values: usize,
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    #[arg(long, default_value_t = 10)]
    features: usize,
    #[arg(long, default_value_t = 100_000)]
    entities: usize,
    /// Where the Parquet files go (emptied first).
    #[arg(long)]
    dir: std::path::PathBuf,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 11
    }
}

const START: i64 = 1_704_067_200_000_000; // 2024-01-01T00:00:00Z
const YEAR: i64 = 365 * 86_400 * 1_000_000;

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let store = OfflineStore::new(
        Arc::new(LocalFileSystem::new_with_prefix(&args.dir)?),
        "features",
    );
    let mut rng = Lcg(args.seed);
    let started = Instant::now();
    let mut written = 0usize;
    let mut bytes = 0usize;
    let chunk = 1_000_000;
    let mut done = 0;
    while done < args.values {
        let n = chunk.min(args.values - done);
        let batch: Vec<ValueRow> = (0..n)
            .map(|i| {
                let f = (done + i) % args.features;
                let e = rng.next() as usize % args.entities;
                let t = START + (rng.next() as i64).rem_euclid(YEAR);
                ValueRow {
                    entity: format!("S-{e}"),
                    feature: format!("f{f}@1"),
                    value: json!((rng.next() % 10_000) as f64 / 100.0),
                    event_time: t,
                    ingested_at: t,
                }
            })
            .collect();
        for w in store.append("sample", &batch).await? {
            written += w.rows;
            bytes += w.bytes;
        }
        done += n;
    }
    let write_s = started.elapsed().as_secs_f64();
    let entities: Vec<String> = (0..args.rows)
        .map(|_| format!("S-{}", rng.next() as usize % args.entities))
        .collect();
    let times: Vec<i64> = (0..args.rows)
        .map(|_| START + (rng.next() as i64).rem_euclid(YEAR))
        .collect();
    let features: Vec<JoinFeature> = (0..args.features)
        .map(|f| JoinFeature {
            key: format!("f{f}@1"),
            value_type: ValueType::Float,
            ttl: None,
        })
        .collect();
    let rss_before = peak_rss_mib();
    let started = Instant::now();
    let joined = store
        .join("sample", &entities, &times, &features, false)
        .await?;
    let join_s = started.elapsed().as_secs_f64();
    let filled: usize = joined
        .columns
        .iter()
        .map(|c| match c {
            tracseq_features::offline::Column::Number(v) => {
                v.iter().filter(|x| x.is_some()).count()
            }
            tracseq_features::offline::Column::Text(v) => v.iter().filter(|x| x.is_some()).count(),
        })
        .sum();
    println!(
        "{}",
        json!({
            "values": written, "rows": args.rows, "features": args.features, "entities": args.entities,
            "write_s": write_s, "parquet_bytes": bytes, "bytes_per_value": bytes as f64 / written.max(1) as f64,
            "join_s": join_s, "rows_per_minute": args.rows as f64 / join_s * 60.0,
            "filled_cells": filled, "peak_rss_mib_before_join": rss_before, "peak_rss_mib": peak_rss_mib(),
        })
    );
    Ok(())
}
