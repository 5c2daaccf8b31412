//! Dispatch throughput: how fast the platform moves no-op jobs through the
//! state store, the queue and the workers, end to end.
//!
//! Inserts and publishes `--jobs` noop jobs (as the scheduler would: store
//! row first, then a wake-up message), runs `--workers` workers in this
//! process, and times from just before the first insert until every job is
//! `succeeded` in the store. Then, with one job in flight at a time, measures
//! the per-job dispatch latency (insert → `succeeded` observed), the
//! platform's fixed cost per job, to express it as a share of a one-second
//! trial. Prints one JSON line.
//!
//! `--mode embedded`: SQLite + in-process queue in a temporary directory.
//! `--mode distributed`: PostgreSQL (fresh schema `bench_<uuid>`, dropped at
//! the end) + RabbitMQ (prefix `bench-<uuid>`, deleted at the end) + a
//! temporary artifact directory.

use chrono::Utc;
use clap::{Parser, ValueEnum};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracseq_backends::platform::Role;
use tracseq_backends::{PgOptions, PostgresStateStore};
use tracseq_core::config::DistributedConfig;
use tracseq_core::lifecycle::RetryPolicy;
use tracseq_core::ports::JobFilter;
use tracseq_core::protocol::{JobSpec, NoopPayload};
use tracseq_core::types::{DispatchMessage, JobState, NewJob};
use tracseq_core::{JobId, Platform, WorkerId};
use tracseq_worker::{HostResources, Worker, WorkerOptions};

const CLASS: &str = "cpu";
const POLICY: RetryPolicy = RetryPolicy {
    backoff_base_ms: 50,
    backoff_max_ms: 200,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Embedded,
    Distributed,
}

#[derive(Parser, Debug)]
#[command(about = "No-op job dispatch throughput of TracSeq ML (one JSON line on stdout)")]
struct Args {
    #[arg(long, value_enum, default_value = "embedded")]
    mode: Mode,
    /// No-op jobs in the throughput run.
    #[arg(long, default_value_t = 2000)]
    jobs: usize,
    /// In-process workers.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Concurrent jobs per worker (also its queue prefetch).
    #[arg(long, default_value_t = 4)]
    slots: u16,
    /// Jobs stored and published together (one transaction, one round of
    /// publisher confirms), as the scheduler does with one tick's trials;
    /// 1 submits them one at a time.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Jobs in the low-load latency run (one in flight at a time, one
    /// worker); 0 skips it.
    #[arg(long, default_value_t = 20)]
    latency_jobs: usize,
    /// Gives up (exit 1) if the throughput run takes longer than this.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    #[arg(
        long,
        env = "TRACSEQ_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    database_url: String,
    #[arg(
        long,
        env = "TRACSEQ_BENCH_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp_url: String,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(e) = run(args).await {
        eprintln!("dispatch: {e}");
        std::process::exit(1);
    }
}

/// What a distributed run must clean up, whatever happens.
struct Distributed {
    admin: PostgresStateStore,
    schema: String,
    prefix: String,
}

async fn run(args: Args) -> Result<(), BoxError> {
    let tmp = tempfile::tempdir()?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (platform, dist) = match args.mode {
        Mode::Embedded => {
            let (p, _queue) =
                tracseq_backends::platform::embedded(tmp.path(), &Default::default(), POLICY)
                    .await?;
            (p, None)
        }
        Mode::Distributed => {
            let schema = format!("bench_{id}");
            let prefix = format!("bench-{id}");
            let admin = PostgresStateStore::connect(
                &args.database_url,
                PgOptions {
                    max_connections: 2,
                    schema: Some(schema.clone()),
                    application_name: "tracseq-bench migrate".into(),
                    ..Default::default()
                },
            )
            .await?;
            let dist = Distributed {
                admin,
                schema,
                prefix,
            };
            if let Err(e) = dist.admin.migrate().await {
                dist.cleanup(&args.amqp_url).await;
                return Err(e.into());
            }
            let cfg = DistributedConfig {
                database_url: args.database_url.clone(),
                database_max_connections: (args.workers as u32) * u32::from(args.slots) + 4,
                database_schema: dist.schema.clone(),
                amqp_url: args.amqp_url.clone(),
                amqp_prefix: dist.prefix.clone(),
                artifact_url: tmp.path().join("artifacts").display().to_string(),
                ..Default::default()
            };
            // Artifacts sealed as in production, under a key of the run's own.
            let encryption = tracseq_core::config::EncryptionConfig {
                key_file: Some(tracseq_backends::encryption::ensure_embedded_key(
                    tmp.path(),
                )?),
                ..Default::default()
            };
            match tracseq_backends::platform::distributed(
                &cfg,
                &encryption,
                Role::Worker,
                vec![CLASS.into()],
                POLICY,
            )
            .await
            {
                Ok(p) => (p, Some(dist)),
                Err(e) => {
                    dist.cleanup(&args.amqp_url).await;
                    return Err(e.into());
                }
            }
        }
    };

    let result = measure(&platform, &args).await;
    drop(platform);
    if let Some(dist) = dist {
        dist.cleanup(&args.amqp_url).await;
    }
    let (seconds, latency) = result?;

    let mode = match args.mode {
        Mode::Embedded => "embedded",
        Mode::Distributed => "distributed",
    };
    let mut line = json!({
        "mode": mode,
        "jobs": args.jobs,
        "workers": args.workers,
        "slots": args.slots,
        "batch": args.batch,
        "seconds": round(seconds, 4),
        "jobs_per_sec": round(args.jobs as f64 / seconds, 1),
    });
    if let Some(l) = latency {
        line["latency"] = l;
    }
    println!("{line}");
    Ok(())
}

/// Throughput seconds, and the low-load latency summary if asked for.
async fn measure(
    platform: &Platform,
    args: &Args,
) -> Result<(f64, Option<serde_json::Value>), BoxError> {
    let cancel = CancellationToken::new();
    let mut workers = Vec::new();

    // Low-load latency first, with one worker running.
    workers.push(start_worker(platform, 0, args.slots, &cancel));
    let latency = if args.latency_jobs > 0 {
        Some(low_load_latency(platform, args.latency_jobs).await)
    } else {
        None
    };

    for i in 1..args.workers.max(1) {
        workers.push(start_worker(platform, i, args.slots, &cancel));
    }
    let throughput = throughput(
        platform,
        args.jobs,
        args.batch,
        Duration::from_secs(args.timeout_secs),
    )
    .await;

    cancel.cancel();
    for w in workers {
        match tokio::time::timeout(Duration::from_secs(15), w).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => eprintln!("dispatch: worker ended with {e}"),
            Ok(Err(e)) => eprintln!("dispatch: worker task failed: {e}"),
            Err(_) => eprintln!("dispatch: worker did not stop within 15 s"),
        }
    }
    let latency = match latency {
        Some(l) => Some(l?),
        None => None,
    };
    Ok((throughput?, latency))
}

fn start_worker(
    platform: &Platform,
    i: usize,
    slots: u16,
    cancel: &CancellationToken,
) -> JoinHandle<tracseq_core::Result<()>> {
    let opts = WorkerOptions {
        id: WorkerId(format!("bench-{i}")),
        resource_classes: vec!["cpu".into()],
        host: Arc::new(HostResources::cpu_only(
            WorkerId(format!("bench-{i}")),
            u32::from(slots.max(1)),
        )),
        slots: slots.max(1),
        lease: Duration::from_secs(60),
        heartbeat: Duration::from_secs(15),
        drain: Duration::from_secs(10),
        dataset_limits: Default::default(),
    };
    let reporter = Arc::new(tracseq_scheduler::Reporter::new(platform.clone()));
    let w = Arc::new(Worker::new(
        platform.clone(),
        opts,
        Arc::new(Notify::new()),
        reporter,
    ));
    let c = cancel.clone();
    tokio::spawn(async move { w.run(c).await })
}

fn noop_job() -> tracseq_core::types::Job {
    NewJob {
        spec: JobSpec::Noop(NoopPayload::default()),
        experiment_id: None,
        resource_class: CLASS.into(),
        resources: Default::default(),
        priority: 0,
        max_attempts: 1,
        timeout_secs: 60,
    }
    .into_job(Utc::now(), None)
    .expect("a noop job encodes")
}

async fn submit(platform: &Platform) -> Result<JobId, BoxError> {
    Ok(submit_batch(platform, 1).await?[0])
}

/// Stores `n` jobs in one transaction, then publishes their wake-ups
/// together (the scheduler's order: row first, then message).
async fn submit_batch(platform: &Platform, n: usize) -> Result<Vec<JobId>, BoxError> {
    let jobs: Vec<_> = (0..n).map(|_| noop_job()).collect();
    platform.state.insert_jobs(&jobs).await?;
    let msgs: Vec<_> = jobs.iter().map(DispatchMessage::for_job).collect();
    platform.queue.publish_batch(CLASS, &msgs).await?;
    Ok(jobs.iter().map(|j| j.id).collect())
}

/// Seconds from before the first insert until all `n` jobs are `succeeded`.
async fn throughput(
    platform: &Platform,
    n: usize,
    batch: usize,
    limit: Duration,
) -> Result<f64, BoxError> {
    let succeeded_filter = JobFilter {
        states: vec![JobState::Succeeded],
        ..Default::default()
    };
    // Jobs of the latency run, already finished before the clock starts.
    let before = platform.state.list_jobs(&succeeded_filter).await?.len();
    let start = Instant::now();
    let deadline = start + limit;
    let mut ids = Vec::with_capacity(n);
    while ids.len() < n {
        let size = batch.max(1).min(n - ids.len());
        ids.extend(submit_batch(platform, size).await?);
        if Instant::now() > deadline {
            return Err(format!("submitting {n} jobs took over {limit:?}").into());
        }
    }
    // Every job is in the store now: done when none is left unfinished.
    let unfinished = JobFilter {
        states: vec![
            JobState::Queued,
            JobState::Leased,
            JobState::Running,
            JobState::Failed,
        ],
        limit: Some(1),
        ..Default::default()
    };
    loop {
        if platform.state.list_jobs(&unfinished).await?.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("jobs still unfinished after {limit:?}").into());
        }
        // Coarse enough not to load the store it measures (< 1% of a run).
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seconds = start.elapsed().as_secs_f64();

    let succeeded = platform.state.list_jobs(&succeeded_filter).await?.len() - before;
    if succeeded != n {
        return Err(format!("{succeeded} of {n} jobs succeeded").into());
    }
    for id in [ids[0], ids[n / 2], ids[n - 1]] {
        let job = platform.state.get_job(id).await?;
        if job.result_attempt != Some(1) || job.result != Some(json!({"noop": true, "slept_ms": 0}))
        {
            return Err(format!("unexpected result: {job:?}").into());
        }
    }
    Ok(seconds)
}

/// One job at a time: insert + publish, then poll the store (every 1 ms)
/// until it is `succeeded`. Latency = insert start → success observed.
async fn low_load_latency(platform: &Platform, n: usize) -> Result<serde_json::Value, BoxError> {
    // One warm-up job (connections, prepared statements), not counted.
    let mut samples = Vec::with_capacity(n);
    for i in 0..=n {
        let start = Instant::now();
        let id = submit(platform).await?;
        loop {
            let job = platform.state.get_job(id).await?;
            match job.state {
                JobState::Succeeded => break,
                JobState::Dead => return Err(format!("noop job died: {job:?}").into()),
                _ => {}
            }
            if start.elapsed() > Duration::from_secs(10) {
                return Err("a single noop job took over 10 s".into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if i > 0 {
            samples.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    samples.sort_by(f64::total_cmp);
    let pct = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    let median = pct(0.5);
    Ok(json!({
        "jobs": n,
        "median_ms": round(median, 3),
        "p90_ms": round(pct(0.9), 3),
        "max_ms": round(samples[samples.len() - 1], 3),
        "mean_ms": round(samples.iter().sum::<f64>() / n as f64, 3),
        "overhead_pct_of_1s_trial": round(median / 1000.0 * 100.0, 3),
    }))
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

impl Distributed {
    /// Drops the schema and deletes this run's RabbitMQ queues and exchanges.
    async fn cleanup(&self, amqp_url: &str) {
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema);
        if let Err(e) = sqlx::query(&sql).execute(self.admin.pool()).await {
            eprintln!("dispatch: could not drop schema {}: {e}", self.schema);
        }
        self.admin.close().await;
        if let Err(e) = delete_amqp_topology(amqp_url, &self.prefix).await {
            eprintln!(
                "dispatch: could not delete RabbitMQ objects {}.*: {e}",
                self.prefix
            );
        }
    }
}

/// The names `AmqpQueue` declares for a prefix (see core/src/backends/amqp.rs).
async fn delete_amqp_topology(url: &str, prefix: &str) -> Result<(), BoxError> {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    use lapin::{Connection, ConnectionProperties};
    let conn = tokio::time::timeout(
        Duration::from_secs(10),
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await??;
    let ch = conn.create_channel().await?;
    for queue in [
        format!("{prefix}.jobs.{CLASS}"),
        format!("{prefix}.jobs.dead"),
    ] {
        ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await?;
    }
    for exchange in [format!("{prefix}.jobs"), format!("{prefix}.jobs.dlx")] {
        ch.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await?;
    }
    let _ = conn.close(200, "bench done".into()).await;
    Ok(())
}
