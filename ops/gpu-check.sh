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

# TRACSEQ_LIBTORCH_MODE=cuda runs a CUDA-linked binary on a host without a GPU.
exports=$(bash "$ROOT/ops/libtorch.sh" "${TRACSEQ_LIBTORCH_MODE:-auto}")
eval "$exports"
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

# The dispatch path on this host: `tracseq-ml up` (embedded: scheduler, two
# workers sharing the host's GPUs) runs an MLP experiment whose trials ask
# for half a GPU each; every trial job records the device it was given.
echo "== end to end: MLP trials asking for gpus: 0.5 through tracseq-ml up"
WORK="$(mktemp -d)"
PORT=$((20000 + RANDOM % 20000))
"$BIN" up --port "$PORT" --data-dir "$WORK/data" --workers 2 >"$WORK/up.log" 2>&1 &
UP=$!
trap 'kill $UP 2>/dev/null || true; rm -rf "$WORK"' EXIT
B="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do curl -sf "$B/health" >/dev/null && break; sleep 0.2; done
"$BIN" generate --rows 4000 --seed 7 --out "$WORK/samples.csv"
DS=$(curl -sf -X POST --data-binary @"$WORK/samples.csv" -H 'content-type: text/csv' "$B/datasets?name=gpu-check" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
EXP=$(curl -sf -X POST "$B/experiments" -H 'content-type: application/json' -d "{
  \"name\": \"gpu-check\", \"dataset_id\": \"$DS\", \"target\": \"quality_score\",
  \"budget\": {\"trials\": 6}, \"parallelism\": 4, \"seed\": 7, \"model_name\": \"gpu-check\",
  \"resources\": {\"gpus\": 0.5},
  \"search_space\": {\"family\": {\"type\": \"categorical\", \"choices\": [\"nn\"]},
                     \"nn_epochs\": {\"type\": \"int\", \"low\": 10, \"high\": 30}}}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
for _ in $(seq 1 600); do
    STATE=$(curl -sf "$B/experiments/$EXP" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
    case "$STATE" in running | finalizing) sleep 0.5 ;; *) break ;; esac
done
curl -sf "$B/experiments/$EXP" | python3 -c '
import json, sys
e = json.load(sys.stdin)
print(json.dumps({k: e.get(k) for k in ("state", "error", "counts", "best_trial", "model_version")}, indent=1))'
curl -sf "$B/experiments/$EXP/trials" | python3 -c '
import json, sys, urllib.request
base = sys.argv[1]
for t in json.load(sys.stdin):
    job = json.load(urllib.request.urlopen(base + "/jobs/" + t["job_id"]))
    print("trial", t["number"], t["state"], "value=%s" % t.get("value"),
          "gpus=" + json.dumps(job.get("gpus")),
          "started=%s finished=%s" % (job.get("started_at"), job.get("finished_at")))' "$B"
echo "== GET /workers"
curl -sf "$B/workers" | python3 -m json.tool
echo "== GET /metrics (GPU lines)"
curl -sf "$B/metrics" | grep -E '^tracseq_(gpu|workers)' || true
