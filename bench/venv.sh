#!/usr/bin/env bash
# Sourced by the issue-5 harnesses (bench/hpo, bench/models, bench/automl):
# makes sure the benchmark venv exists with bench/requirements.txt installed
# and sets BENCH_PY to its python. The venv lives outside the clone, in
# $TRACSEQ_BENCH_VENV (default ~/.cache/tracseq-ml/bench-venv); a marker
# holding the requirements' checksum makes a changed requirements file
# reinstall. `bench_venv_torch` also makes the torch 2.11.0 wheel that
# ops/libtorch.sh installs importable (a .pth file; needs the wheel's CUDA
# libraries even on the CPU, so it installs ops/libtorch.sh's "cuda" tree,
# about 3 GB, once, as bench/mlp/run.sh does).
BENCH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH_VENV="${TRACSEQ_BENCH_VENV:-$HOME/.cache/tracseq-ml/bench-venv}"
BENCH_PY="$BENCH_VENV/bin/python"

bench_venv() {
  local want have=""
  want=$(sha256sum "$BENCH_ROOT/bench/requirements.txt" | cut -c1-16)
  [ -f "$BENCH_VENV/.requirements" ] && have=$(cat "$BENCH_VENV/.requirements")
  if [ ! -x "$BENCH_PY" ] || [ "$want" != "$have" ]; then
    echo "[bench] installing bench/requirements.txt into $BENCH_VENV (once)" >&2
    [ -x "$BENCH_PY" ] || python3 -m venv "$BENCH_VENV"
    "$BENCH_PY" -m pip install --disable-pip-version-check -q -r "$BENCH_ROOT/bench/requirements.txt" >&2
    echo "$want" > "$BENCH_VENV/.requirements"
  fi
}

bench_venv_torch() {
  local site pth
  site=$(bash "$BENCH_ROOT/ops/libtorch.sh" cuda | sed -n 's/^export TRACSEQ_TORCH_SITE=//p')
  pth=$("$BENCH_PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/tracseq-torch.pth
  if [ "$(cat "$pth" 2>/dev/null)" != "$site" ]; then
    echo "$site" > "$pth"
  fi
}

# cmake, ninja and libclang for the LightGBM and XGBoost families' C++
# (ops/native-deps.sh), before any cargo build.
bench_native_deps() {
  if [ -f "$BENCH_ROOT/ops/native-deps.sh" ]; then
    exports=$(bash "$BENCH_ROOT/ops/native-deps.sh")
    eval "$exports"
  fi
}

# One release build serves every harness: the server binary and the
# family_bench example, with the nn family (--features torch), in
# $CARGO_TARGET_DIR (default ~/.cache/tracseq-ml/target-bench, apart from the
# debug target of ops/test.sh so neither evicts the other). One feature set
# for all, so the LightGBM/XGBoost/libtorch C++ is built once.
bench_build() {
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tracseq-ml/target-bench}"
  bench_native_deps
  exports=$(bash "$BENCH_ROOT/ops/libtorch.sh" cpu)
  eval "$exports"
  echo "[bench] cargo build --release --locked --workspace --features torch --bins --examples (target $CARGO_TARGET_DIR)" >&2
  (cd "$BENCH_ROOT" && cargo build --release --locked --workspace --features torch --bins --examples >&2)
}

# The tracseq-ml binary a harness talks to: --binary, else $TRACSEQ_BIN, else
# the release build above (built if missing). A binary linked against
# libtorch gets LD_LIBRARY_PATH from ops/libtorch.sh.
bench_binary() {
  local bin=${1:-${TRACSEQ_BIN:-}}
  if [ -z "$bin" ]; then
    bin="${CARGO_TARGET_DIR:-$HOME/.cache/tracseq-ml/target-bench}/release/tracseq-ml"
    [ -x "$bin" ] || bench_build
  fi
  if [ ! -x "$bin" ]; then
    echo "[bench] no tracseq-ml binary at $bin" >&2
    return 1
  fi
  local deps
  deps=$(ldd "$bin" 2>/dev/null || true)
  if grep -q 'libtorch.*not found\|libc10.*not found' <<< "$deps"; then
    exports=$(bash "$BENCH_ROOT/ops/libtorch.sh" cpu)
    eval "$exports"
  fi
  BENCH_BINARY=$(readlink -f "$bin")
}

# The main of a harness that talks to the server: `--binary PATH` picks the
# server (bench_binary), `-h` prints the calling script's header (its lines
# 2..$help_end), every other argument goes on to the Python script.
bench_run_with_server() { # script.py caller help_end args...
  local script=$1 caller=$2 help_end=$3 bin="" args=()
  shift 3
  while [ $# -gt 0 ]; do
    case "$1" in
      --binary) bin="$2"; shift 2 ;;
      -h|--help) sed -n "2,${help_end}p" "$caller"; exit 0 ;;
      *) args+=("$1"); shift ;;
    esac
  done
  bench_venv
  bench_binary "$bin"
  exec "$BENCH_PY" "$script" --binary "$BENCH_BINARY" "${args[@]}"
}
