#!/usr/bin/env bash
# The main job in one command: provide what the build needs, build the
# release binary with every model family, and run the demo with it
# (synthetic lab data -> AutoML -> registry -> serving -> one prediction).
#
#   ops/demo.sh                      # the README's first command
#   ops/demo.sh --trials 40 --seed 3 # flags go to `tracseq-ml demo`
#
# Each step stops the script the moment it fails and says what is missing:
# the build tools of LightGBM and XGBoost (ops/native-deps.sh), libtorch for
# the neural-network family (ops/libtorch.sh), then cargo. The binary is run
# directly, without the LD_LIBRARY_PATH that ops/libtorch.sh prints: it finds
# libtorch and libxgboost through the rpath build.rs gives it, which is what
# `target/release/tracseq-ml up` relies on afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "demo.sh: $*" >&2; exit 1; }

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || fail "cargo is not installed (Rust 1.85 or newer: https://rustup.rs)"
command -v python3 >/dev/null 2>&1 || fail "python3 is not installed (ops/native-deps.sh and ops/libtorch.sh install their tools with pip)"

# `x=$(cmd)` fails the script when cmd fails (set -e), unlike `eval "$(cmd)"`,
# whose failed substitution is an empty string that evaluates fine.
native=$(bash ops/native-deps.sh) || fail "ops/native-deps.sh failed (see above): cmake, ninja, libclang or g++ could not be installed"
torch=$(bash ops/libtorch.sh) || fail "ops/libtorch.sh failed (see above): libtorch 2.11.0 could not be installed"
user_ld_path=${LD_LIBRARY_PATH-}
eval "$native"
eval "$torch"
[ -n "${LIBTORCH:-}" ] || fail "ops/libtorch.sh printed no LIBTORCH"

cargo build --release --locked --features torch --bin tracseq-ml ||
  fail "cargo build failed (see above)"

bin="${CARGO_TARGET_DIR:-target}/release/tracseq-ml"
[ -x "$bin" ] || fail "$bin was not built"
if [ -n "$user_ld_path" ]; then
  export LD_LIBRARY_PATH="$user_ld_path"
else
  unset LD_LIBRARY_PATH
fi
exec "$bin" demo "$@"
