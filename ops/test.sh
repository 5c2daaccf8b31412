#!/usr/bin/env bash
# The one test command: formatting, lints and every test of the workspace.
#
# It checks, and where needed installs or starts, every service the tests
# need: PostgreSQL (127.0.0.1:5432), RabbitMQ (127.0.0.1:5672), Redis
# (127.0.0.1:6379, and the redis-server binary for private servers), a local S3
# server (s3s-fs, started here on a free port) and libtorch for the
# neural-network family (ops/libtorch.sh), and the build tools of the
# LightGBM and XGBoost families (cmake >= 3.28, ninja, libclang:
# ops/native-deps.sh). With CI set, a test whose service is missing fails
# instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }

if ! command -v cargo >/dev/null 2>&1; then
  # shellcheck disable=SC1091
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo is not installed (https://rustup.rs)" >&2; exit 1; }
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    rustup component add "$component"
  fi
done

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port seconds
  for _ in $(seq 1 $(( $2 * 5 ))); do port_open "$1" && return 0; sleep 0.2; done
  return 1
}

apt_install() {
  command -v apt-get >/dev/null 2>&1 || { echo "cannot install $*: no apt-get" >&2; return 1; }
  [ -n "${APT_UPDATED:-}" ] || { apt-get update -qq >&2; APT_UPDATED=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

say "services"
if ! port_open 5432; then
  command -v pg_ctlcluster >/dev/null 2>&1 || apt_install postgresql
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
  wait_port 5432 30 || { echo "PostgreSQL did not start" >&2; exit 1; }
fi
echo "PostgreSQL: 127.0.0.1:5432"
if ! port_open 5672; then
  command -v rabbitmq-server >/dev/null 2>&1 || apt_install rabbitmq-server
  echo "starting RabbitMQ"
  rabbitmq-server -detached
  wait_port 5672 90 || { echo "RabbitMQ did not start" >&2; exit 1; }
fi
echo "RabbitMQ: 127.0.0.1:5672"
# The prediction cache's tests use the machine's Redis and start private
# redis-servers of their own (to stop one mid-test).
command -v redis-server >/dev/null 2>&1 || apt_install redis-server
if ! port_open 6379; then
  echo "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no
  wait_port 6379 30 || { echo "Redis did not start" >&2; exit 1; }
fi
echo "Redis: 127.0.0.1:6379"
# promtool (the Prometheus project's linter) checks the /metrics text.
command -v promtool >/dev/null 2>&1 || apt_install --no-install-recommends prometheus
echo "promtool: $(command -v promtool)"
command -v python3 >/dev/null 2>&1 || apt_install python3
# curl is the independent S3 client the distributed test reads objects with.
command -v curl >/dev/null 2>&1 || apt_install curl
s3=$(bash ops/s3-server.sh start) || { echo "ops/s3-server.sh could not start the S3 server" >&2; exit 1; }
eval "$s3"
trap 'bash ops/s3-server.sh stop' EXIT
echo "S3 (s3s-fs): $TRACSEQ_TEST_S3_ENDPOINT"

say "libtorch"
# The neural-network family builds against libtorch 2.11.0; installed once
# into ~/.cache/tracseq-ml (outside the clone), CPU-only unless a GPU answers.
torch=$(bash ops/libtorch.sh) || { echo "ops/libtorch.sh failed: libtorch 2.11.0 could not be installed" >&2; exit 1; }
eval "$torch"
echo "LIBTORCH=$LIBTORCH ($TRACSEQ_TORCH_MODE)"

say "native build tools"
# LightGBM and XGBoost build from their bundled C++ sources (cached in the
# target directory after the first build). `x=$(cmd) || exit` rather than
# `eval "$(cmd)"`, which would go on after a failed script.
native=$(bash ops/native-deps.sh) || { echo "ops/native-deps.sh failed: cmake, ninja, libclang or g++ could not be installed" >&2; exit 1; }
eval "$native"
echo "CMAKE=$CMAKE LIBCLANG_PATH=$LIBCLANG_PATH"

say "format"
cargo fmt --all --check

# Lints and tests build in the release profile, like the demo: the C++ of
# LightGBM and XGBoost (and every other dependency) is then compiled once for
# both, instead of a second time for the dev profile (build scripts run per
# profile, also under clippy).
say "lint"
cargo clippy --release --workspace --all-targets --locked --features torch -- -D warnings
# The model crate without libtorch and without LightGBM/XGBoost must stay
# clean too (the features are optional). Other feature sets are not linted
# here: each changes the build scripts' dependency features, so cargo would
# build LightGBM and XGBoost from source once more for each.
cargo clippy --release -p tracseq-learn --all-targets --locked --no-default-features -- -D warnings

say "test"
cargo test --release --workspace --locked --features torch

say "fuzz"
# schemathesis against the binary the tests just built (ops/fuzz-api.sh).
bash ops/fuzz-api.sh
