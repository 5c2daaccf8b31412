#!/usr/bin/env bash
# MLP training throughput: the nn family's trainer (Rust, libtorch through
# tch; ml/examples/mlp_bench.rs) against the same network in PyTorch
# (bench/mlp/mlp_torch.py), on the same torch 2.11.0 wheel, in one run.
#
#   bash bench/mlp/run.sh               # CPU
#   DEVICE=cuda bash bench/mlp/run.sh   # a GPU host
#
# Knobs (environment): ROWS (50000), EPOCHS (6), BATCH (256), WIDTH (128),
# LAYERS (2), FEATURES (32), THREADS (1), REPEATS (3), DROPOUTS ("0.1 0").
# Each configuration runs REPEATS times per side, alternating sides so load
# from other processes hits both alike; a run's figure is its median epoch
# after the first, and the table shows the best run of each side.
# Raw JSON lines go to stderr, the table to stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."

DEVICE=${DEVICE:-cpu}
ROWS=${ROWS:-50000}
EPOCHS=${EPOCHS:-6}
BATCH=${BATCH:-256}
WIDTH=${WIDTH:-128}
LAYERS=${LAYERS:-2}
FEATURES=${FEATURES:-32}
THREADS=${THREADS:-1}
REPEATS=${REPEATS:-3}
DROPOUTS=${DROPOUTS:-"0.1 0"}
CACHE="${TRACSEQ_CACHE:-$HOME/.cache/tracseq-ml}"
mode=cpu
if [ "$DEVICE" = cuda ]; then
  mode=cuda
fi

# Python imports the CUDA wheel only with its CUDA libraries present (even
# to run on the CPU), which the full ("cuda") install has; Rust links the
# CPU tree on CPU hosts.
py_site=$(ops/libtorch.sh cuda | sed -n 's/^export TRACSEQ_TORCH_SITE=//p')
exports=$(ops/libtorch.sh "$mode")
eval "$exports"
py_extra="$CACHE/libtorch-2.11.0/bench-python"
if [ ! -f "$py_extra/.complete" ]; then
  echo "installing numpy for the PyTorch side into $py_extra (once)" >&2
  python3 -m pip install --disable-pip-version-check --target "$py_extra" numpy >&2
  touch "$py_extra/.complete"
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target-bench-mlp-$mode}"
cargo build --release -p tracseq-learn --features torch --example mlp_bench >&2
rust_bin="$CARGO_TARGET_DIR/release/examples/mlp_bench"

out=$(mktemp)
trap 'rm -f "$out"' EXIT
for dropout in $DROPOUTS; do
  args=(--device "$DEVICE" --rows "$ROWS" --epochs "$EPOCHS" --batch "$BATCH" --width "$WIDTH"
    --layers "$LAYERS" --features "$FEATURES" --dropout "$dropout" --threads "$THREADS")
  for _ in $(seq 1 "$REPEATS"); do
    "$rust_bin" "${args[@]}" | tee -a "$out" >&2
    PYTHONPATH="$py_site:$py_extra" python3 bench/mlp/mlp_torch.py "${args[@]}" | tee -a "$out" >&2
  done
done

python3 - "$out" <<'EOF'
import json, sys
runs = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
first = runs[0]
print(f"device {first['device']}, {first['rows']} rows ({first['train_rows']} train), "
      f"{first['features']} features, {first['layers']}x{first['width']} + batch norm, "
      f"batch {first['batch']}, {first['epochs']} epochs, {first['threads']} thread(s)")
print()
print("| dropout | Rust (tch) rows/s | PyTorch rows/s | Rust / PyTorch |")
print("|---|---:|---:|---:|")
for dropout in sorted({r["dropout"] for r in runs}, reverse=True):
    best = {}
    for r in runs:
        if r["dropout"] == dropout:
            best[r["impl"]] = max(best.get(r["impl"], 0.0), r["median_rows_per_second"])
    rust, torch = best.get("rust-tch", 0.0), best.get("pytorch", 0.0)
    ratio = rust / torch if torch else float("nan")
    print(f"| {dropout} | {rust:,.0f} | {torch:,.0f} | {ratio:.2f}x |")
EOF
