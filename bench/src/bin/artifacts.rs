//! What encryption at rest costs: artifacts written and read through the
//! platform's own artifact store ([`ObjectArtifactStore`], the store every
//! upload, download, trial result and model load goes through), sealed
//! (the default) and in plain text (`encryption.disabled`), side by side
//! in alternating rounds over one local directory, as embedded mode keeps
//! them.
//!
//! For each object size: `put` (seal and write, or write), `get` (read and
//! authenticate whole: what workers and model loads do) and `stream` (what
//! `GET /artifacts/{path}` sends), in MiB of plaintext per second, the
//! median over the rounds. Prints a Markdown table.

use bytes::Bytes;
use clap::Parser;
use futures::StreamExt;
use std::time::Instant;
use tracseq_backends::encryption::keys::{generate_key_line, Keyring};
use tracseq_backends::encryption::Encryption;
use tracseq_backends::ObjectArtifactStore;
use tracseq_core::ports::{ArtifactPath, ArtifactStore};

#[derive(Parser, Debug)]
#[command(about = "Sealed against plain artifact throughput (a Markdown table on stdout)")]
struct Args {
    /// Rounds; each measures both modes, in alternating order.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Object sizes in bytes (a model, a trial result, a 1 MiB and a
    /// 64 MiB data set, the largest accepted by default).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "4096,65536,1048576,67108864"
    )]
    sizes: Vec<usize>,
    /// Bytes written per size and mode in each round (at least one object).
    #[arg(long, default_value_t = 256 * 1024 * 1024)]
    volume: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Plain,
    Sealed,
}

/// MiB/s of put, get, stream.
type Rates = [f64; 3];

async fn measure(store: &ObjectArtifactStore, size: usize, volume: usize, round: usize) -> Rates {
    let count = (volume / size).max(1);
    let body = Bytes::from((0..size).map(|i| (i * 7 % 251) as u8).collect::<Vec<u8>>());
    let paths: Vec<ArtifactPath> = (0..count)
        .map(|i| ArtifactPath::parse(&format!("bench/r{round}/s{size}/{i}/data.csv")).unwrap())
        .collect();
    let mib = (count * size) as f64 / (1024.0 * 1024.0);
    let t = Instant::now();
    for p in &paths {
        store.put(p, body.clone()).await.unwrap();
    }
    let put = mib / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for p in &paths {
        assert_eq!(store.get(p).await.unwrap().len(), size);
    }
    let get = mib / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for p in &paths {
        let mut s = store.get_stream(p).await.unwrap();
        let mut n = 0;
        while let Some(chunk) = s.next().await {
            n += chunk.unwrap().len();
        }
        assert_eq!(n, size);
    }
    let stream = mib / t.elapsed().as_secs_f64();
    for p in &paths {
        store.delete(p).await.unwrap();
    }
    [put, get, stream]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = generate_key_line().unwrap();
    let open = |mode| {
        let store = ObjectArtifactStore::local(dir.path()).unwrap();
        match mode {
            Mode::Plain => store.with_encryption(Encryption::off()),
            Mode::Sealed => {
                store.with_encryption(Encryption::with_keyring(Keyring::from_text(&key).unwrap()))
            }
        }
    };
    let (plain, sealed) = (open(Mode::Plain), open(Mode::Sealed));
    // results[size][mode] = one Rates per round
    let mut results = vec![[Vec::new(), Vec::new()]; args.sizes.len()];
    for round in 0..args.rounds {
        let order = if round % 2 == 0 {
            [Mode::Sealed, Mode::Plain]
        } else {
            [Mode::Plain, Mode::Sealed]
        };
        for mode in order {
            let store = if mode == Mode::Plain { &plain } else { &sealed };
            for (i, &size) in args.sizes.iter().enumerate() {
                let r = measure(store, size, args.volume, round).await;
                results[i][(mode == Mode::Sealed) as usize].push(r);
            }
        }
        eprintln!("round {} of {} done", round + 1, args.rounds);
    }
    println!("| object | operation | plain MiB/s | sealed MiB/s | sealed / plain |");
    println!("|---|---|---:|---:|---:|");
    for (i, &size) in args.sizes.iter().enumerate() {
        for (op, name) in ["put", "get", "stream"].iter().enumerate() {
            let m = |mode: usize| median(results[i][mode].iter().map(|r| r[op]).collect());
            let (p, s) = (m(0), m(1));
            println!(
                "| {} | {name} | {p:.0} | {s:.0} | {:.2} |",
                human(size),
                s / p
            );
        }
    }
}

fn human(bytes: usize) -> String {
    if bytes >= 1024 * 1024 {
        format!("{} MiB", bytes / (1024 * 1024))
    } else {
        format!("{} KiB", bytes / 1024)
    }
}
