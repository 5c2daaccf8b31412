//! Trains the same seeded MLP on the CPU and, where libtorch sees one, on
//! CUDA, and prints `tracseq_learn::nn_check::device_check` as JSON.
//!
//! ```sh
//! eval "$(ops/libtorch.sh)"
//! cargo run --release -p tracseq-learn --features torch --example nn_device_check -- 20000 1
//! ```

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let rows = match args.next() {
        Some(s) => s.parse().map_err(|e| format!("rows {s}: {e}"))?,
        None => 20_000,
    };
    let seed = match args.next() {
        Some(s) => s.parse().map_err(|e| format!("seed {s}: {e}"))?,
        None => 1,
    };
    let out = tracseq_learn::nn_check::device_check(rows, seed).map_err(|e| e.to_string())?;
    println!("{out:#}");
    Ok(())
}
