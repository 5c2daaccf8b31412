#!/usr/bin/env bash
# The one test command: formatting, lints and every test of the workspace.
#
# It checks (and, where it can, installs or starts) what the tests need.
# Embedded mode needs no external service; the distributed backends'
# tests (PostgreSQL, RabbitMQ, S3) add their checks here as they land.
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

say "format"
cargo fmt --all --check

say "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "test"
cargo test --workspace --locked
