#!/usr/bin/env bash
# GPU host check: what a TracSeq ML worker on this host sees and does.
#
#   bash ops/gpu-check.sh                 # builds tracseq-ml (release, torch) here first
#   bash ops/gpu-check.sh path/to/tracseq-ml   # uses a binary built elsewhere
#
# Prints nvidia-smi's view, then `tracseq-ml gpu-check` as JSON:
# - the NVML inventory exactly as the worker reads it (name, UUID, memory
#   total/free, utilisation, temperature, power);
# - one placement scenario on that inventory (quarter shares packing onto
#   one device, a whole-GPU job, a request larger than the host);
# - the same seeded MLP trained on CUDA and on CPU, with both validation
#   metrics and their difference.
# A prebuilt binary must be linked against libtorch 2.11.0 with
# libtorch_cuda (LIBTORCH from `ops/libtorch.sh cuda` at build time); its
# libraries are found here through the host's own torch 2.11.0 (the GPU
# image's python3), or the wheels ops/libtorch.sh installs.
# No test depends on this script; results go to bench/RESULTS.md by hand.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROWS="${TRACSEQ_GPU_CHECK_ROWS:-20000}"
SEED="${TRACSEQ_GPU_CHECK_SEED:-42}"

eval "$(bash "$ROOT/ops/libtorch.sh")"
if [ "$TRACSEQ_TORCH_MODE" != cuda ]; then
    echo "gpu-check: no NVIDIA GPU answers nvidia-smi here; the check still runs, CPU only" >&2
fi

BIN="${1:-}"
if [ -z "$BIN" ]; then
    (cd "$ROOT" && cargo build --release --features torch --bin tracseq-ml >&2)
    BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/tracseq-ml"
fi

# CUDA numbers devices fastest-first by default; NVML (and so placement and
# CUDA_VISIBLE_DEVICES) by PCI bus. One order for both.
export CUDA_DEVICE_ORDER=PCI_BUS_ID

echo "== nvidia-smi"
nvidia-smi --query-gpu=index,name,uuid,memory.total,memory.used,utilization.gpu,temperature.gpu,power.draw \
    --format=csv 2>&1 || echo "(nvidia-smi unavailable)"
echo "== $BIN gpu-check --rows $ROWS --seed $SEED"
"$BIN" gpu-check --rows "$ROWS" --seed "$SEED"
