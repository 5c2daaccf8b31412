//! `tracseq-ml`: the command line. Thin: parse flags, load configuration,
//! start the components, wait for Ctrl-C.

mod demo;
mod embedded;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
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
    /// Create or upgrade the embedded state database, then exit.
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
}

/// Request spans stay, but warp's per-request "finished" line is only kept
/// for errors: a log line per prediction would cost more than the prediction.
const DEFAULT_LOG: &str = "info,warp::filters::trace=warn";

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
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
            init_tracing("warn");
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
            if let Some(p) = port {
                cfg.api.port = *p;
            }
            if let Some(h) = host {
                cfg.api.host = *h;
            }
            if let Some(w) = workers {
                cfg.worker.count = *w;
            }
            cfg.validate()?;
            let addr = SocketAddr::new(cfg.api.host, cfg.api.port);
            let running = embedded::Embedded::start(&cfg, addr).await?;
            println!(
                "tracseq-ml listening on http://{} (data in {})",
                running.addr,
                cfg.data_dir.display()
            );
            wait_for_shutdown_signal().await;
            running.shutdown().await;
            Ok(())
        }
        Command::Migrate => {
            init_tracing(DEFAULT_LOG);
            let cfg = load_config(&cli)?;
            std::fs::create_dir_all(&cfg.data_dir)?;
            let path = cfg.data_dir.join("state.db");
            tracseq_core::backends::SqliteStateStore::open(&path).await?;
            println!("migrated {}", path.display());
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
