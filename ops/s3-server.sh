#!/usr/bin/env bash
# Installs (once, cached outside the clone) and starts a local S3 server for
# the tests: s3s-fs, which checks request signatures like real S3.
#
#   eval "$(ops/s3-server.sh start)"   # prints the TRACSEQ_TEST_S3_* exports
#   ops/s3-server.sh stop              # stops the server those exports name
#
# Each start gets its own data directory and port, so concurrent test runs
# never share (or stop) each other's server.
set -euo pipefail

CACHE="${TRACSEQ_CACHE:-$HOME/.cache/tracseq-ml}"
BIN="$CACHE/bin/s3s-fs"
VERSION=0.14.1 # 0.15+ needs a newer rustc than this toolchain
ACCESS_KEY=tracseq
SECRET_KEY=tracseq-secret
BUCKET=tracseq-test

install() {
  if [ ! -x "$BIN" ]; then
    echo "installing s3s-fs $VERSION into $CACHE (once; about 3 minutes)" >&2
    cargo install --locked "s3s-fs@$VERSION" --features binary --root "$CACHE" >&2
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start() {
  install
  local state port pid
  state=$(mktemp -d "${TMPDIR:-/tmp}/tracseq-s3.XXXXXX")
  mkdir -p "$state/data/$BUCKET"
  port=$(free_port)
  nohup "$BIN" --host 127.0.0.1 --port "$port" --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" \
    "$state/data" >"$state/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "export TRACSEQ_TEST_S3_ENDPOINT=http://127.0.0.1:$port"
      echo "export TRACSEQ_TEST_S3_BUCKET=$BUCKET"
      echo "export TRACSEQ_TEST_S3_ACCESS_KEY=$ACCESS_KEY"
      echo "export TRACSEQ_TEST_S3_SECRET_KEY=$SECRET_KEY"
      echo "export TRACSEQ_TEST_S3_PID=$pid"
      echo "export TRACSEQ_TEST_S3_DIR=$state"
      return 0
    fi
    sleep 0.1
  done
  echo "s3s-fs did not start; see $state/server.log" >&2
  kill "$pid" 2>/dev/null || true
  return 1
}

stop() {
  if [ -n "${TRACSEQ_TEST_S3_PID:-}" ]; then
    kill "$TRACSEQ_TEST_S3_PID" 2>/dev/null || true
  fi
  if [ -n "${TRACSEQ_TEST_S3_DIR:-}" ] && [ -d "$TRACSEQ_TEST_S3_DIR" ]; then
    rm -rf "$TRACSEQ_TEST_S3_DIR"
  fi
}

case "${1:-start}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
