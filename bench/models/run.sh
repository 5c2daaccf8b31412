#!/usr/bin/env bash
# Model quality and training time against the reference libraries (see
# models_bench.py's docstring): scikit-learn, LightGBM, XGBoost and PyTorch at
# the hyperparameters in bench/models/params.json, on 5 fixed folds of
# scikit-learn's breast_cancer, wine, digits and diabetes.
#
# Usage: bash bench/models/run.sh [--ours] [--family-bench PATH] [--threads 1]
#          [--datasets breast_cancer,wine,digits,diabetes]
#          [--families linear,gbm,random_forest,xgboost,lightgbm,nn]
#          [--csv-dir DIR] [--results FILE]
# --ours: also run our side, tracseq-learn's `family_bench` example from the
# harnesses' one release build (bench/venv.sh, bench_build; built if missing)
# unless --family-bench names a built one.
# Without --ours only the reference side runs. Tables on stdout, progress on
# stderr, everything measured in bench/models/results.json.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../venv.sh
source "$HERE/../venv.sh"

OURS=0
FAMILY_BENCH="${FAMILY_BENCH:-}"
THREADS=1
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --ours) OURS=1; shift ;;
    --family-bench) FAMILY_BENCH="$2"; OURS=1; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done

bench_venv
bench_venv_torch
if [ "$OURS" = 1 ]; then
  exports=$(bash "$BENCH_ROOT/ops/libtorch.sh" cpu)
  eval "$exports"
  if [ -z "$FAMILY_BENCH" ]; then
    FAMILY_BENCH="${CARGO_TARGET_DIR:-$HOME/.cache/tracseq-ml/target-bench}/release/examples/family_bench"
    [ -x "$FAMILY_BENCH" ] || bench_build
  fi
  export FAMILY_BENCH
  # The example has no rpath to the libxgboost.so its -sys crate built
  # (only the server binary gets one, from the root build.rs); `cargo run`
  # would add it to the library path, so do the same here.
  xgb_lib=$(ls -dt "$(dirname "$FAMILY_BENCH")"/../build/xgboost_lib-sys-*/out/lib 2>/dev/null | head -n 1)
  [ -n "$xgb_lib" ] && export LD_LIBRARY_PATH="$xgb_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  ARGS+=(--ours)
fi
# One thread per library unless asked otherwise (OpenMP in scikit-learn's
# HistGradientBoosting, LightGBM, XGBoost and torch reads this too).
export OMP_NUM_THREADS="$THREADS"
exec "$BENCH_PY" "$HERE/models_bench.py" --threads "$THREADS" "${ARGS[@]}"
