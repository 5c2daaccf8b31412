#!/usr/bin/env bash
# Dispatch throughput: no-op jobs end to end through TracSeq ML (embedded and
# distributed) and through Celery, same job count and worker count, in one run.
# Rewrites the "## Dispatch throughput" section of bench/RESULTS.md.
#
# Usage: bash bench/dispatch.sh [--jobs N] [--workers W] [--slots S] [--batch B]
#                               [--results FILE | --no-results] [--no-build]
# Needs PostgreSQL (trust auth, database `test`), RabbitMQ (guest/guest) and
# Redis on 127.0.0.1; override with TRACSEQ_BENCH_DATABASE_URL,
# TRACSEQ_BENCH_AMQP_URL, CELERY_NOOP_BROKER, CELERY_NOOP_BACKEND.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JOBS=2000
WORKERS=2
SLOTS=4
BATCH=100
LATENCY_JOBS=20
RESULTS="$ROOT/bench/RESULTS.md"
BUILD=1
SECTION="## Dispatch throughput"

while [ $# -gt 0 ]; do
    case "$1" in
        --jobs) JOBS="$2"; shift ;;
        --workers) WORKERS="$2"; shift ;;
        --slots) SLOTS="$2"; shift ;;
        --batch) BATCH="$2"; shift ;;
        --results) RESULTS="$2"; shift ;;
        --no-results) RESULTS="" ;;
        --no-build) BUILD=0 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

log() { echo "[dispatch.sh] $*" >&2; }
cd "$ROOT"

if [ "$BUILD" -eq 1 ]; then
    log "cargo build --release -p tracseq-bench --bin dispatch"
    cargo build --release -p tracseq-bench --bin dispatch >&2
fi
VENV="$ROOT/bench/.venv"
if [ ! -x "$VENV/bin/celery" ]; then
    log "creating $VENV (celery, redis)"
    python3 -m venv "$VENV"
    timeout 300 "$VENV/bin/pip" install -q celery redis >&2
fi
CELERY_VERSION="$("$VENV/bin/celery" --version | awk '{ print $1 }')"

DISPATCH_ARGS="--jobs $JOBS --workers $WORKERS --slots $SLOTS --latency-jobs $LATENCY_JOBS"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/dispatch"
# The bench binary links libxgboost.so through the worker but, unlike
# tracseq-ml (build.rs), carries no rpath to it: point the loader at the
# copy cargo built.
XGB_SO="$(find "${CARGO_TARGET_DIR:-$ROOT/target}/release/build" -name 'libxgboost.so*' -print -quit 2>/dev/null || true)"
if [ -n "$XGB_SO" ]; then
    export LD_LIBRARY_PATH="$(dirname "$XGB_SO")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
CELERY_ARGS="--jobs $JOBS --workers $WORKERS --pool prefork --latency-jobs $LATENCY_JOBS"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# Rows: both modes submitting in batches (as the scheduler does per tick),
# and distributed submitting one job at a time (as single API calls do).
run_dispatch() {  # name mode batch
    log "dispatch --mode $2 --batch $3 $DISPATCH_ARGS"
    # shellcheck disable=SC2086
    timeout 180 "$BIN" --mode "$2" --batch "$3" $DISPATCH_ARGS > "$WORK/$1.json"
    cat "$WORK/$1.json" >&2
}
run_dispatch embedded embedded "$BATCH"
run_dispatch distributed distributed "$BATCH"
run_dispatch distributed_single distributed 1
log "celery_noop.py $CELERY_ARGS"
# shellcheck disable=SC2086
(cd bench && timeout 180 "$VENV/bin/python" celery_noop.py $CELERY_ARGS) > "$WORK/celery.json"
cat "$WORK/celery.json" >&2

COMMIT="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' (with uncommitted changes)')"
CPU_MODEL="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)"
PG_VERSION="$(psql -h 127.0.0.1 -U postgres -d test -tAc 'SHOW server_version' 2>/dev/null || echo unknown)"

python3 - "$WORK" "$RESULTS" "$SECTION" "$JOBS" "$WORKERS" "$SLOTS" "$BATCH" "$LATENCY_JOBS" \
    "$COMMIT" "$(nproc)" "$CPU_MODEL" "$(date -u '+%Y-%m-%d %H:%M UTC')" "$CELERY_VERSION" "$PG_VERSION" <<'PY'
import json, os, sys
(work, results, heading, jobs, workers, slots, batch, latency_jobs,
 commit, nproc, cpu, date, celery_version, pg_version) = sys.argv[1:]
MODES = ("embedded", "distributed", "distributed_single", "celery")
rows = {m: json.load(open(os.path.join(work, m + ".json"))) for m in MODES}
label = {
    "embedded": f"tracseq-ml embedded (SQLite + in-process queue), batches of {batch}",
    "distributed": f"tracseq-ml distributed (PostgreSQL + RabbitMQ), batches of {batch}",
    "distributed_single": "tracseq-ml distributed, submitted one at a time",
    "celery": f"Celery {celery_version} (RabbitMQ broker, Redis results, prefork)",
}
lines = [heading, "",
         f"`bash bench/dispatch.sh` — {date}, commit {commit}.",
         f"Machine: nproc = {nproc}, {cpu}; PostgreSQL {pg_version}, RabbitMQ and Redis on the same",
         "machine (127.0.0.1), sharing the CPUs with the benchmark and its workers.", "",
         f"{jobs} no-op jobs, {workers} workers, one run per row, rows one after another.",
         "Time = from just before the first job is inserted/submitted until every job",
         "is `succeeded` in the store (Celery: every result is back from Redis).", "",
         "| mode | jobs | seconds | jobs/s | low-load latency median / p90 ms |",
         "|---|---:|---:|---:|---:|"]
for m in MODES:
    r = rows[m]
    l = r.get("latency") or {}
    lat = f"{l['median_ms']:.2f} / {l['p90_ms']:.2f}" if l else "—"
    lines.append(f"| {label[m]} | {r['jobs']:,} | {r['seconds']:.2f} | {r['jobs_per_sec']:,.0f} | {lat} |")
d, c = rows["distributed"]["jobs_per_sec"], rows["celery"]["jobs_per_sec"]
d1 = rows["distributed_single"]["jobs_per_sec"]
lines += ["",
          f"Ratio distributed / Celery: {d / c:.2f}x the jobs/s in batches of {batch} "
          f"({'faster' if d >= c else 'slower'} than Celery on this machine); "
          f"{d1 / c:.2f}x submitting one at a time.", ""]
od = rows["distributed"].get("latency", {})
oe = rows["embedded"].get("latency", {})
oc = rows["celery"].get("latency", {})
if od:
    lines += [
        "Scheduling overhead for one-second trials: "
        f"**{od['overhead_pct_of_1s_trial']:.2f}%** distributed, "
        f"{oe.get('overhead_pct_of_1s_trial', float('nan')):.2f}% embedded "
        f"(Celery: {oc.get('overhead_pct_of_1s_trial', float('nan')):.2f}%).",
        "",
        "Method: there is no sleeping job kind, so the overhead is the fixed",
        "platform cost per job measured with no-op jobs at low load and divided",
        f"by 1 s. After one uncounted warm-up job, {latency_jobs} no-op jobs are run one at a time",
        "with one worker running: each is inserted and published, then the store",
        "is polled every 1 ms (`get_job`) until it reads `succeeded`; latency =",
        "insert start to success observed. Overhead = median latency / 1000 ms.",
        "It includes store writes (insert, lease claim, running, result), the",
        "queue hop and up to ~1 ms of polling granularity; it excludes the",
        "scheduler's own tick (jobs are inserted here, not created by an",
        "experiment). Celery's figure is the same loop with `AsyncResult.get`",
        "(interval 1 ms).", ""]
lines += [
    f"Settings: tracseq-ml workers run in the `dispatch` process, each with {slots} slots",
    f"(prefetch {slots}), lease 60 s; one task inserts jobs in batches of {batch} (one",
    "transaction, then one round of publisher confirms for the batch's messages),",
    f"or one job at a time in the `submitted one at a time` row. Celery: one worker process, `--concurrency {workers} --pool prefork`, default",
    "prefetch multiplier (4), `--without-gossip --without-mingle --without-heartbeat`,",
    "one warm-up task before timing; tasks submitted sequentially with `apply_async`,",
    "results collected with `ResultSet.get`.", "",
    "Commands:", "", "```sh",
    "cargo build --release -p tracseq-bench --bin dispatch",
    f"target/release/dispatch --mode embedded --batch {batch} --jobs {jobs} --workers {workers} --slots {slots} --latency-jobs {latency_jobs}",
    f"target/release/dispatch --mode distributed --batch {batch} --jobs {jobs} --workers {workers} --slots {slots} --latency-jobs {latency_jobs}   # schema bench_<uuid>, AMQP prefix bench-<uuid>, both removed afterwards",
    f"target/release/dispatch --mode distributed --batch 1 --jobs {jobs} --workers {workers} --slots {slots} --latency-jobs {latency_jobs}",
    "python3 -m venv bench/.venv && bench/.venv/bin/pip install celery redis",
    f"cd bench && .venv/bin/python celery_noop.py --jobs {jobs} --workers {workers} --pool prefork --latency-jobs {latency_jobs}",
    "```", "",
    "Raw output:", "", "```"]
lines += [json.dumps(rows[m], separators=(",", ":")) for m in MODES]
lines += ["```"]
section = "\n".join(lines) + "\n"
print(section)
if results:
    text = open(results).read() if os.path.exists(results) else "# Benchmark results\n"
    ls = text.splitlines(keepends=True)
    start = next((i for i, l in enumerate(ls) if l.rstrip("\n") == heading), None)
    if start is None:
        out = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((j for j in range(start + 1, len(ls))
                    if ls[j].startswith("## ") or ls[j].startswith("# ")), len(ls))
        rest = "".join(ls[end:])
        out = "".join(ls[:start]) + section + ("\n" + rest if rest else "")
    open(results, "w").write(out)
    print(f"[dispatch.sh] wrote {heading} to {results}", file=sys.stderr)
PY
