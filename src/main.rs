//! `tracseq-ml`: the command line. Thin: parse flags, load configuration,
//! start the components, wait for Ctrl-C.

mod demo;
mod embedded;
mod gpu_check;
mod keys_cli;
mod security_cli;

/// Every request allocates a few dozen small objects (the JSON body's map,
/// strings, the prediction log's record); mimalloc's per-thread free lists
/// serve them for a fraction of glibc malloc's cost, which was a fifth of
/// `/predict`'s CPU time (bench/RESULTS.md, "/predict per model family").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use tracseq_backends::platform::Role;
use tracseq_core::config::Config;

#[derive(Parser)]
#[command(
    name = "tracseq-ml",
    version,
    about = "AutoML scheduler, worker fleet, model registry and serving for laboratory data"
)]
struct Cli {
    /// Configuration file (default: ./tracseq.toml when present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Where embedded mode keeps its state and artifacts (config: data_dir).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate lab data, run an AutoML experiment end to end, serve and query the model.
    Demo(demo::DemoArgs),
    /// Run the whole platform in this process and serve the API until Ctrl-C.
    Up {
        /// Port to listen on (config: api.port, default 8094).
        #[arg(long)]
        port: Option<u16>,
        /// Address to bind (config: api.host, default 127.0.0.1).
        #[arg(long)]
        host: Option<std::net::IpAddr>,
        /// Workers to run in this process (config: worker.count).
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Distributed: serve the API over PostgreSQL, RabbitMQ and S3.
    Api {
        /// Port to listen on (config: api.port).
        #[arg(long)]
        port: Option<u16>,
        /// Address to bind (config: api.host).
        #[arg(long)]
        host: Option<std::net::IpAddr>,
    },
    /// Distributed: run the scheduler (dispatch loop, lease expiry, retries).
    Scheduler,
    /// Distributed: run workers that take jobs from RabbitMQ.
    Worker {
        /// Worker loops in this process.
        #[arg(long)]
        workers: Option<usize>,
        /// Jobs each runs at once (config: worker.slots).
        #[arg(long)]
        slots: Option<u16>,
        /// Queues to consume: auto, cpu, gpu or a list such as gpu,cpu
        /// (config: worker.resource_class).
        #[arg(long)]
        resource_class: Option<String>,
        /// GPUs to offer instead of asking NVML, e.g. "0:A100:81920,1:A100:81920"
        /// or "none" (config: worker.gpus).
        #[arg(long)]
        gpus: Option<String>,
    },
    /// Create or upgrade the state database (PostgreSQL when a database URL
    /// is configured, else the embedded SQLite file), then exit.
    Migrate,
    /// Write the synthetic sample-quality data set as CSV.
    Generate {
        #[arg(long, default_value_t = 2000)]
        rows: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print one sample's features as a JSON object instead.
        #[arg(long)]
        example: bool,
    },
    /// API tokens: create (the secret is printed once), list, revoke.
    #[command(subcommand)]
    Token(security_cli::TokenCommand),
    /// The audit log: verify its hash chain.
    #[command(subcommand)]
    Audit(security_cli::AuditCommand),
    /// Keys of the artifacts at rest: generate, status, rotate, migrate.
    #[command(subcommand)]
    Keys(keys_cli::KeysCommand),
    /// Serve one model artifact on its own (what the Docker, Kubernetes and
    /// SageMaker deploy targets run): GET /ping, GET /health, POST /predict,
    /// POST /invocations. No tokens: keep it behind a network policy.
    Serve {
        /// The model artifact (model.json of a registered version).
        #[arg(long)]
        model_file: PathBuf,
        /// Its SHA-256; the server refuses to start on any other content.
        #[arg(long)]
        sha256: String,
        /// The model's name, as answers report it.
        #[arg(long)]
        name: String,
        /// The version's number, as answers report it.
        #[arg(long)]
        version: u32,
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Print what a worker on this host sees (NVML inventory), one
    /// placement scenario on it, and (with the torch feature) the same
    /// seeded MLP trained on CUDA and on CPU, as JSON.
    GpuCheck {
        /// Rows of sample-quality data for the MLP comparison.
        #[arg(long, default_value_t = 8192)]
        rows: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

/// Request spans stay, but warp's per-request "finished" line is only kept
/// for server errors: a log line per prediction would cost more than the
/// prediction, and a client's 4xx is the client's (the audit log records
/// refusals of access).
const DEFAULT_LOG: &str = "info,warp::filters::trace=error";

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn apply_listen(cfg: &mut Config, port: Option<u16>, host: Option<std::net::IpAddr>) {
    if let Some(p) = port {
        cfg.api.port = p;
    }
    if let Some(h) = host {
        cfg.api.host = h;
    }
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut cfg = Config::load(cli.config.as_deref()).context("loading configuration")?;
    if let Some(d) = &cli.data_dir {
        cfg.data_dir = d.clone();
    }
    Ok(cfg)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Demo(args) => {
            init_tracing("warn,warp::filters::trace=error");
            let cfg = load_config(&cli)?;
            demo::run(cfg, args).await
        }
        Command::Up {
            port,
            host,
            workers,
        } => {
            init_tracing(DEFAULT_LOG);
            let mut cfg = load_config(&cli)?;
            apply_listen(&mut cfg, *port, *host);
            if let Some(w) = workers {
                cfg.worker.count = *w;
            }
            cfg.validate()?;
            let addr = SocketAddr::new(cfg.api.host, cfg.api.port);
            let running = embedded::Running::embedded(&cfg, addr).await?;
            if let Some(a) = running.addr {
                println!(
                    "tracseq-ml listening on http://{a} (data in {})",
                    cfg.data_dir.display()
                );
            }
            wait_for_shutdown_signal().await;
            running.shutdown().await;
            Ok(())
        }
        Command::Api { port, host } => {
            init_tracing(DEFAULT_LOG);
            let mut cfg = load_config(&cli)?;
            apply_listen(&mut cfg, *port, *host);
            cfg.validate()?;
            let addr = SocketAddr::new(cfg.api.host, cfg.api.port);
            let running = embedded::Running::distributed(&cfg, Role::Api, addr, 0).await?;
            if let Some(a) = running.addr {
                println!("tracseq-ml api listening on http://{a}");
            }
            wait_for_shutdown_signal().await;
            running.shutdown().await;
            Ok(())
        }
        Command::Scheduler => {
            init_tracing(DEFAULT_LOG);
            let cfg = load_config(&cli)?;
            cfg.validate()?;
            let addr = SocketAddr::new(cfg.api.host, 0);
            let running = embedded::Running::distributed(&cfg, Role::Scheduler, addr, 0).await?;
            println!("tracseq-ml scheduler running");
            wait_for_shutdown_signal().await;
            running.shutdown().await;
            Ok(())
        }
        Command::Worker {
            workers,
            slots,
            resource_class,
            gpus,
        } => {
            init_tracing(DEFAULT_LOG);
            let mut cfg = load_config(&cli)?;
            if let Some(s) = slots {
                cfg.worker.slots = *s;
            }
            if let Some(c) = resource_class {
                cfg.worker.resource_class = c.clone();
            }
            if let Some(g) = gpus {
                cfg.worker.gpus = Some(g.clone());
            }
            let count = workers.unwrap_or(1);
            cfg.validate()?;
            let addr = SocketAddr::new(cfg.api.host, 0);
            let running = embedded::Running::distributed(&cfg, Role::Worker, addr, count).await?;
            println!(
                "tracseq-ml worker running ({count} x {} slots on '{}')",
                cfg.worker.slots, cfg.worker.resource_class
            );
            wait_for_shutdown_signal().await;
            running.shutdown().await;
            Ok(())
        }
        Command::Migrate => {
            init_tracing(DEFAULT_LOG);
            let cfg = load_config(&cli)?;
            if cfg.distributed.database_url.is_empty() {
                std::fs::create_dir_all(&cfg.data_dir)?;
                let path = cfg.data_dir.join("state.db");
                tracseq_backends::SqliteStateStore::open(&path).await?;
                println!("migrated {}", path.display());
            } else {
                let d = &cfg.distributed;
                let opts = tracseq_backends::PgOptions {
                    max_connections: 2,
                    schema: (!d.database_schema.is_empty()).then(|| d.database_schema.clone()),
                    application_name: "tracseq-ml migrate".into(),
                    ..Default::default()
                };
                let store =
                    tracseq_backends::PostgresStateStore::connect(&d.database_url, opts).await?;
                store.migrate().await?;
                store.check_schema().await?;
                println!("migrated the PostgreSQL schema");
            }
            Ok(())
        }
        Command::Serve {
            model_file,
            sha256,
            name,
            version,
            host,
            port,
        } => {
            init_tracing(DEFAULT_LOG);
            let cfg = load_config(&cli)?;
            tracseq_core::types::validate_name("--name", name)?;
            let model =
                tracseq_api::standalone::ServedModel::load(model_file, sha256, name, *version)?;
            let (tx, rx) = tokio::sync::oneshot::channel();
            let server = tokio::spawn(tracseq_api::standalone::serve(
                std::sync::Arc::new(model),
                cfg.api.max_body_bytes,
                SocketAddr::new(*host, *port),
                wait_for_shutdown_signal(),
                tx,
            ));
            if let Ok(addr) = rx.await {
                println!("tracseq-ml serving model {name} version {version} on http://{addr}");
            }
            server
                .await
                .context("the server task failed")?
                .with_context(|| format!("serving on {host}:{port}"))?;
            Ok(())
        }
        Command::Generate {
            rows,
            seed,
            out,
            example,
        } => {
            let text = if *example {
                serde_json::to_string_pretty(&tracseq_learn::lab::example_record(*seed))? + "\n"
            } else {
                if *rows == 0 || *rows > 1_000_000 {
                    anyhow::bail!("--rows must be 1..=1000000");
                }
                tracseq_learn::lab::generate_csv(*rows, *seed)
            };
            match out {
                Some(path) => std::fs::write(path, text)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => print!("{text}"),
            }
            Ok(())
        }
        Command::Token(cmd) => {
            init_tracing("warn");
            let cfg = load_config(&cli)?;
            security_cli::token(&cfg, cmd).await
        }
        Command::Audit(cmd) => {
            init_tracing("warn");
            let cfg = load_config(&cli)?;
            security_cli::audit(&cfg, cmd).await
        }
        Command::Keys(cmd) => {
            init_tracing("warn");
            let cfg = load_config(&cli)?;
            keys_cli::keys(&cfg, cmd).await
        }
        Command::GpuCheck { rows, seed } => {
            if *rows < 100 || *rows > 1_000_000 {
                anyhow::bail!("--rows must be 100..=1000000");
            }
            let report = gpu_check::run(*rows, *seed)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
    }
}

/// Ctrl-C or SIGTERM (what process managers send).
async fn wait_for_shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
