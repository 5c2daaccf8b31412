#!/usr/bin/env bash
# Hot swap under load: two `tracseq-ml api` replicas, a scheduler and a
# worker over PostgreSQL and RabbitMQ (a fresh schema and queue prefix,
# removed at the end) and a shared artifact directory. Two AutoML runs
# register versions 1 and 2 of model `swap`; version 1 is promoted (an
# admin asks, an approver token approves) and deployed. Then
# `bench/src/bin/swap_load.rs` sends `/predict` without a version to both
# replicas for two phases of equal length: steady (nothing changes), then
# swapping (version 2 promoted, approved, deployed, rolled back; again and
# again). Every answer must be a 2xx naming a version; the table shows
# throughput and latency of each phase.
#
# Usage: bash bench/hot-swap.sh [--phase-secs N] [--connections N] [--results FILE] [--no-build]
# Environment: TRACSEQ_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test),
#   TRACSEQ_TEST_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/%2f).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PHASE_SECS=15
CONNECTIONS=16
RESULTS="$ROOT/bench/RESULTS.md"
BUILD=1
SECTION="## Hot swap under load: two api replicas over PostgreSQL"
while [ $# -gt 0 ]; do
    case "$1" in
        --phase-secs) PHASE_SECS="$2"; shift ;;
        --connections) CONNECTIONS="$2"; shift ;;
        --results) RESULTS="$2"; shift ;;
        --no-build) BUILD=0 ;;
        -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "hot-swap.sh: unknown option: $1" >&2; exit 2 ;;
    esac
    shift
done

log() { printf '[hot-swap.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

DATABASE_URL="${TRACSEQ_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
AMQP_URL="${TRACSEQ_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
ID="$(python3 -c 'import uuid; print(uuid.uuid4().hex[:12])')"
WORK="$(mktemp -d -t tracseq-swap.XXXXXX)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    psql "$DATABASE_URL" -qc "DROP SCHEMA IF EXISTS bench_swap_$ID CASCADE" >/dev/null 2>&1 || true
    [ ! -x "${LOAD:-}" ] || "$LOAD" --delete-queues-of "bench-swap-$ID" --amqp-url "$AMQP_URL" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

command -v psql >/dev/null || die "psql is needed (PostgreSQL client)"
psql "$DATABASE_URL" -qc 'SELECT 1' >/dev/null || die "PostgreSQL at $DATABASE_URL does not answer"
python3 -c 'import socket; socket.create_connection(("127.0.0.1", 5672), 2)' \
    || die "RabbitMQ on 127.0.0.1:5672 does not answer"

if [ "$BUILD" -eq 1 ]; then
    log "cargo build --release -p tracseq-ml -p tracseq-bench"
    cargo build --release -p tracseq-ml -p tracseq-bench >&2 || die "build failed"
fi
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
ML="$TARGET_DIR/release/tracseq-ml"
LOAD="$TARGET_DIR/release/swap_load"
[ -x "$ML" ] && [ -x "$LOAD" ] || die "binaries missing under $TARGET_DIR/release"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
"$ML" keys generate --out "$WORK/kek" 2>/dev/null
export DATABASE_URL AMQP_URL
export ARTIFACT_URL="$WORK/artifacts"
export TRACSEQ_DISTRIBUTED_DATABASE_SCHEMA="bench_swap_$ID"
export TRACSEQ_DISTRIBUTED_AMQP_PREFIX="bench-swap-$ID"
export TRACSEQ_ENCRYPTION_KEY_FILE="$WORK/kek"
export TRACSEQ_SCHEDULER_TICK_MS=100
export RUST_LOG="warn,warp::filters::trace=error"
mkdir -p "$ARTIFACT_URL"

"$ML" migrate >&2 || die "tracseq-ml migrate failed"
ADMIN="$("$ML" token create --name bench-admin --role admin)" || die "token create failed"
P1="$(free_port)"; P2="$(free_port)"
"$ML" api --port "$P1" >"$WORK/api1.log" 2>&1 & PIDS+=($!)
"$ML" api --port "$P2" >"$WORK/api2.log" 2>&1 & PIDS+=($!)
"$ML" scheduler >"$WORK/scheduler.log" 2>&1 & PIDS+=($!)
"$ML" worker >"$WORK/worker.log" 2>&1 & PIDS+=($!)
B1="http://127.0.0.1:$P1"; B2="http://127.0.0.1:$P2"
for b in "$B1" "$B2"; do
    for _ in $(seq 1 300); do curl -sf "$b/health" >/dev/null && break; sleep 0.2; done
    curl -sf "$b/health" >/dev/null || { tail -n 30 "$WORK"/api*.log >&2; die "$b did not start"; }
done
call() {   # call METHOD PATH [BODY]: as the admin, on replica 1
    curl -sf --max-time 60 -X "$1" -H "Authorization: Bearer $ADMIN" \
        -H 'content-type: application/json' ${3:+--data-binary "$3"} "$B1$2"
}
field() { python3 -c 'import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1].split("."): v=v[k]
print(v)' "$1"; }

"$ML" generate --rows 1500 --seed 7 --out "$WORK/samples.csv" >&2
DS="$(curl -sf -X POST -H "Authorization: Bearer $ADMIN" -H 'content-type: text/csv' \
    --data-binary "@$WORK/samples.csv" "$B1/datasets?name=samples" | field id)" || die "upload failed"
for seed in 1 2; do
    EXP="$(call POST /experiments "{\"name\": \"swap-$seed\", \"dataset_id\": \"$DS\", \"target\": \"quality_score\", \"budget\": {\"trials\": 4}, \"parallelism\": 1, \"seed\": $seed, \"model_name\": \"swap\"}" | field id)"
    for _ in $(seq 1 600); do
        state="$(call GET "/experiments/$EXP" | field state)"
        [ "$state" = completed ] && break
        case "$state" in failed|cancelled) die "experiment $EXP $state" ;; esac
        sleep 0.5
    done
    [ "$state" = completed ] || die "experiment $EXP not completed"
    log "experiment $EXP completed"
done
APPROVER="$(call POST /tokens '{"name": "bench-approver", "role": "approver"}' | field token)"
PROMO="$(call POST /models/promote '{"name": "swap", "version": 1, "stage": "production", "reason": "bench"}' | field id)"
curl -sf -X POST -H "Authorization: Bearer $APPROVER" "$B1/promotions/$PROMO/approve" >/dev/null || die "approve failed"
DEP="$(call POST /models/deploy '{"name": "swap", "version": 1}' | field deployment.id)"
for _ in $(seq 1 600); do
    [ "$(call GET "/deployments/$DEP" | field state)" = live ] && break
    sleep 0.1
done
"$ML" generate --example --seed 3 >"$WORK/features.json"
sleep 2   # every replica polls the live deployment (api.deployment_poll_ms)

log "load: $CONNECTIONS connections over 2 replicas, ${PHASE_SECS}s steady then ${PHASE_SECS}s swapping"
"$LOAD" --url "$B1" --url "$B2" --token "$ADMIN" --approver-token "$APPROVER" --model swap \
    --base-version 1 --candidate-version 2 --features "$WORK/features.json" \
    --connections "$CONNECTIONS" --phase-secs "$PHASE_SECS" >"$WORK/result.json" \
    || { tail -n 30 "$WORK"/*.log >&2; die "swap_load failed"; }
cat "$WORK/result.json" >&2

DATE="$(date -u '+%Y-%m-%d %H:%M UTC')"
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
[ -z "$(git status --porcelain 2>/dev/null | head -n 1)" ] || COMMIT="$COMMIT (dirty tree)"
REPORT="$WORK/section.md"
python3 - "$WORK/result.json" "$SECTION" "$DATE" "$COMMIT" "$(nproc)" "$PHASE_SECS" "$CONNECTIONS" >"$REPORT" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
section, date, commit, nproc, secs, conns = sys.argv[2:]
print(section)
print()
print(f"`bash bench/hot-swap.sh` — {date}, commit {commit}. Machine: nproc = {nproc}; the two api")
print("replicas, the scheduler, the worker, PostgreSQL, RabbitMQ and the load generator share these CPUs.")
print()
print("| phase | requests/s | p50 ms | p90 ms | p99 ms | max ms | requests | errors | answers by version | swaps |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
for name, key, swaps in (("steady (no swap)", "steady", 0), ("swapping (deploy v2, roll back to v1, repeated)", "swapping", r["swaps"])):
    p = r[key]
    by = ", ".join(f"v{v}: {n:,}" for v, n in p["answers_by_version"].items())
    print(f"| {name} | {p['requests_per_s']:,.0f} | {p['p50_ms']:.2f} | {p['p90_ms']:.2f} | {p['p99_ms']:.2f} | "
          f"{p['max_ms']:.2f} | {p['requests']:,} | {p['errors']} | {by} | {swaps} |")
print()
s, w = r["steady"], r["swapping"]
print(f"p99 while swapping is {w['p99_ms'] / s['p99_ms']:.2f}x the steady p99 ({w['p99_ms']:.2f} ms vs {s['p99_ms']:.2f} ms); "
      f"errors: {s['errors'] + w['errors']} (every answer is checked for a 2xx status and a version).")
print()
print(f"Load: `swap_load` (bench/src/bin/swap_load.rs), {conns} connections spread over the two replicas, "
      f"{secs} s per phase, `/predict` without a version, each latency from send to full body.")
print("Setup (all in the script): a fresh PostgreSQL schema and RabbitMQ prefix, `tracseq-ml migrate`, "
      "`token create --role admin`, two `tracseq-ml api`, one `scheduler`, one `worker`; two 4-trial AutoML "
      "runs register versions 1 and 2; version 1 promoted (approver token) and deployed. Each swap cycle: "
      "promote v2, approve, `POST /models/deploy`, wait until live, 1.5 s, `POST /deployments/{id}/rollback`, "
      "wait until v1's deployment is live, 1.5 s.")
print()
print("```sh")
print(f"bash bench/hot-swap.sh --phase-secs {secs} --connections {conns}")
print("```")
PY
cat "$REPORT"
errors="$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["steady"]["errors"] + r["swapping"]["errors"])' "$WORK/result.json")"
if [ -n "$RESULTS" ]; then
    python3 - "$RESULTS" "$REPORT" "$SECTION" <<'PY'
import sys, re
path, report, section = sys.argv[1:]
text = open(path).read() if __import__("os").path.exists(path) else "# Benchmark results\n"
new = open(report).read().rstrip() + "\n"
start = text.find(section + "\n")
if start < 0:
    text = text.rstrip() + "\n\n" + new
else:
    nxt = text.find("\n## ", start + len(section))
    text = text[:start] + new + ("\n" + text[nxt + 1:] if nxt >= 0 else "")
open(path, "w").write(text)
PY
    log "updated $RESULTS"
fi
[ "$errors" = 0 ] || die "$errors requests failed during the run"
