#!/usr/bin/env bash
# /predict load test: TracSeq ML's serving endpoint against a warp hello-world
# baseline (bench/src/bin/hello.rs) on the same machine, same framework, same
# request body, same wrk settings. The platform is measured twice over the
# same data dir and model: as shipped (every request carries a predictor
# token, checked by the guard) and built with the `unauthenticated` feature
# (no token check, no audit), so the table shows what authentication costs.
# The model is promoted, approved and deployed first, so a body without a
# version is served the deployed version; the same body pinned to the
# version (no resolution at all) is measured beside it, and with --before
# the build of an earlier commit serves the same body and data dir, so the
# table shows what resolving the deployed version costs.
#
# Usage: bash bench/predict.sh [options]
#   --hello-only        skip the platform (no tracseq-ml up / AutoML run);
#                       measure only the hello baseline. Prints the table and
#                       writes RESULTS.md only if --results is given.
#   --duration D        measured wrk duration per target (default 15s)
#   --warmup D          wrk warmup before each measurement (default 3s)
#   --threads N         wrk threads (default 2)
#   --connections N     wrk connections (default 32)
#   --results FILE      Markdown file to update (default bench/RESULTS.md,
#                       none in --hello-only mode)
#   --no-build          use the existing target/release binaries (and
#                       TRACSEQ_ML_NOAUTH_BIN for the unauthenticated build)
#   --before REF        also build commit REF (a git worktree) and measure
#                       it on the same data dir (TRACSEQ_ML_BEFORE_BIN: an
#                       already built binary instead)
# Environment: TRACSEQ_ML_BIN (default target/release/tracseq-ml),
#   BENCH_NO_JQ=1 (parse JSON with python3 even when jq is installed).
#
# All traffic goes to 127.0.0.1. Every step is bounded in time; every process
# the script starts is stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

HELLO_ONLY=0
DURATION=15s
WARMUP=3s
THREADS=2
CONNECTIONS=32
RESULTS=""
BUILD=1
BEFORE_REF=""
TRIALS=6
ROWS=2000
EXPERIMENT_TIMEOUT_S=300
SECTION="## /predict throughput and latency"

usage() { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --hello-only) HELLO_ONLY=1 ;;
        --duration) DURATION="$2"; shift ;;
        --warmup) WARMUP="$2"; shift ;;
        --threads) THREADS="$2"; shift ;;
        --connections) CONNECTIONS="$2"; shift ;;
        --results) RESULTS="$2"; shift ;;
        --no-build) BUILD=0 ;;
        --before) BEFORE_REF="$2"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "predict.sh: unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
if [ -z "$RESULTS" ] && [ "$HELLO_ONLY" -eq 0 ]; then
    RESULTS="$ROOT/bench/RESULTS.md"
fi

log() { printf '[predict.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup ---
WORK="$(mktemp -d -t tracseq-bench.XXXXXX)"
PLATFORM_PID=""
HELLO_PID=""
WRK_PID=""
stop_pid() {
    local pid="$1"
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    stop_pid "$WRK_PID"
    stop_pid "$HELLO_PID"
    stop_pid "$PLATFORM_PID"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ tools ---
ensure_wrk() {
    command -v wrk >/dev/null 2>&1 && return 0
    log "wrk not found; installing with apt-get"
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "wrk is missing and not root; install wrk"
        sudo="sudo"
    fi
    if ! DEBIAN_FRONTEND=noninteractive timeout 300 $sudo apt-get install -y wrk >&2; then
        DEBIAN_FRONTEND=noninteractive timeout 300 $sudo apt-get update >&2
        DEBIAN_FRONTEND=noninteractive timeout 300 $sudo apt-get install -y wrk >&2
    fi
    command -v wrk >/dev/null 2>&1 || die "could not install wrk"
}

# json_get EXPR: read JSON on stdin, print the field at EXPR (".a.b").
# Strings come out raw; anything else as compact JSON. Empty if absent/null.
if [ -z "${BENCH_NO_JQ:-}" ] && command -v jq >/dev/null 2>&1; then   # BENCH_NO_JQ=1 forces python3
    json_get() { jq -rc "$1 // empty"; }
    # json_value EXPR: the field as compact JSON (strings keep their quotes).
    json_value() { jq -c "$1"; }
    # predict_body NAME RECORD_JSON
    predict_body() { jq -nc --arg m "$1" --argjson f "$2" '{model: $m, features: $f}'; }
    # pinned_body BODY_JSON VERSION: the body with "version" added
    pinned_body() { jq -c --argjson v "$2" '. + {version: $v}' <<<"$1"; }
    experiment_body() {
        jq -nc --argjson ds "$1" --argjson trials "$TRIALS" \
            '{name: "bench", dataset_id: $ds, target: "quality_score",
              budget: {trials: $trials}, parallelism: 2, seed: 7}'
    }
else
    command -v python3 >/dev/null 2>&1 || die "need jq or python3 for JSON"
    _py_get='
import json, sys
v = json.load(sys.stdin)
for k in [k for k in sys.argv[1].split(".") if k]:
    v = v.get(k) if isinstance(v, dict) else None
mode = sys.argv[2]
if mode == "raw":
    if v is not None:
        print(v if isinstance(v, str) else json.dumps(v, separators=(",", ":")))
else:
    print(json.dumps(v, separators=(",", ":")))
'
    json_get() { python3 -c "$_py_get" "$1" raw; }
    json_value() { python3 -c "$_py_get" "$1" json; }
    predict_body() {
        python3 -c 'import json,sys; print(json.dumps({"model": sys.argv[1], "features": json.loads(sys.argv[2])}, separators=(",", ":")))' "$1" "$2"
    }
    pinned_body() {
        python3 -c 'import json,sys; b = json.loads(sys.argv[1]); b["version"] = int(sys.argv[2]); print(json.dumps(b, separators=(",", ":")))' "$1" "$2"
    }
    experiment_body() {
        python3 -c 'import json,sys; print(json.dumps({"name": "bench", "dataset_id": json.loads(sys.argv[1]), "target": "quality_score", "budget": {"trials": int(sys.argv[2])}, "parallelism": 2, "seed": 7}, separators=(",", ":")))' "$1" "$TRIALS"
    }
fi

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_http URL PID NAME: poll URL (up to 60 s) while PID is alive.
wait_http() {
    local url="$1" pid="$2" name="$3" logfile="$4"
    for _ in $(seq 1 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 40 "$logfile" >&2 || true
            die "$name exited before answering $url"
        fi
        if curl -sf --max-time 2 "$url" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    tail -n 40 "$logfile" >&2 || true
    die "$name did not answer $url within 60 s"
}

# check_predict URL: one request with the bench body must succeed.
check_predict() {
    local url="$1" out
    out="$(curl -sS --max-time 10 -w '\n%{http_code}' -X POST \
        -H "Authorization: Bearer ${BENCH_TOKEN:-none}" \
        -H 'content-type: application/json' --data-binary "@$BODY_FILE" "$url")" \
        || die "POST $url failed"
    local code="${out##*$'\n'}"
    [ "$code" = "200" ] || die "POST $url answered HTTP $code: ${out%$'\n'*}"
    log "POST $url -> ${out%$'\n'*}"
}

# ------------------------------------------------------------------- wrk ---
WRK_LUA="bench/post.lua"   # relative to the repository root (we cd there)

# seconds DURATION: "15s" / "1m" / "15" -> seconds (for timeouts)
seconds() {
    local d="$1"
    case "$d" in
        *ms) echo 1 ;;
        *s) echo "${d%s}" ;;
        *m) echo $(( ${d%m} * 60 )) ;;
        *h) echo $(( ${d%h} * 3600 )) ;;
        *) echo "$d" ;;
    esac
}

PORTS_USED=""
SETUP_CMDS=()   # the exact commands, in order, for the report
# run_wrk NAME URL SHOWN_BASE: warmup, then the measured run; the summary
# line goes to $WORK/NAME.bench and the command (with SHOWN_BASE for the
# port) to SETUP_CMDS.
# run_bounded SECONDS OUTFILE CMD...: run CMD under timeout in the background
# and wait for it, so a signal to this script stops it at once (via cleanup).
run_bounded() {
    local budget="$1" out="$2"
    shift 2
    BENCH_BODY_FILE="$BODY_FILE" BENCH_TOKEN="${BENCH_TOKEN:-}" timeout "$budget" "$@" >"$out" 2>&1 &
    WRK_PID=$!
    local rc=0
    wait "$WRK_PID" || rc=$?
    WRK_PID=""
    return "$rc"
}

run_wrk() {
    local name="$1" url="$2"
    local budget=$(( $(seconds "$DURATION") + $(seconds "$WARMUP") + 60 ))
    local warm_cmd=(wrk "-t$THREADS" "-c$CONNECTIONS" "-d$WARMUP" -s "$WRK_LUA" "$url")
    local cmd=(wrk "-t$THREADS" "-c$CONNECTIONS" "-d$DURATION" --latency -s "$WRK_LUA" "$url")
    log "$name: warmup ${warm_cmd[*]}"
    run_bounded "$budget" "$WORK/$name.warmup.txt" "${warm_cmd[@]}" \
        || { cat "$WORK/$name.warmup.txt" >&2; die "$name warmup failed"; }
    log "$name: ${cmd[*]}"
    run_bounded "$budget" "$WORK/$name.txt" "${cmd[@]}" \
        || { cat "$WORK/$name.txt" >&2; die "$name wrk run failed"; }
    cat "$WORK/$name.txt" >&2
    local shown="${cmd[*]}"
    shown="${shown%% http://*}"
    local env="BENCH_BODY_FILE=body.json"
    [ -z "${BENCH_TOKEN:-}" ] || env="$env BENCH_TOKEN=\$TOKEN"
    SETUP_CMDS+=("$env $shown $3/predict   # $name; after the same with -d$WARMUP, no --latency, as warmup")
    grep '^BENCH ' "$WORK/$name.txt" | tail -n 1 >"$WORK/$name.bench" \
        || die "no BENCH line in $name wrk output"
}

# row NAME LABEL: a Markdown table row
row() {
    local name="$1" label="$2"
    python3 - "$WORK/$name.bench" "$label" <<'PY'
import sys
kv = dict(p.split("=", 1) for p in open(sys.argv[1]).read().split()[1:])
req, dur = int(kv["requests"]), int(kv["duration_us"])
rps = req / (dur / 1e6)
errs = sum(int(kv[k]) for k in kv if k.startswith("errors_"))
ms = lambda k: f"{int(kv[k]) / 1000:.2f}"
print(f"| {sys.argv[2]} | {rps:,.0f} | {ms('p50_us')} | {ms('p90_us')} | {ms('p99_us')} | {ms('max_us')} | {req:,} | {errs} |")
PY
}
rps_of() { python3 -c 'import sys; kv=dict(p.split("=",1) for p in open(sys.argv[1]).read().split()[1:]); print(int(kv["requests"])/(int(kv["duration_us"])/1e6))' "$WORK/$1.bench"; }

# ------------------------------------------------------------------ build ---
ensure_wrk
[ -f "$WRK_LUA" ] || die "$WRK_LUA missing"
BODY_FILE="$WORK/body.json"

if [ "$BUILD" -eq 1 ]; then
    if [ "$HELLO_ONLY" -eq 0 ] && [ -n "$BEFORE_REF" ] && [ -z "${TRACSEQ_ML_BEFORE_BIN:-}" ]; then
        # The earlier commit in a worktree of its own, built into a target
        # directory of its own (kept between runs): cargo names a workspace
        # crate's build by its path inside the workspace, so two checkouts
        # sharing one target directory would take each other's builds.
        BEFORE_TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/before-commit"
        git -C "$ROOT" worktree add --detach "$WORK/before-src" "$BEFORE_REF" >&2 \
            || die "git worktree add $BEFORE_REF failed"
        log "building $BEFORE_REF into $BEFORE_TARGET"
        (cd "$WORK/before-src" && CARGO_TARGET_DIR="$BEFORE_TARGET" timeout 3600 cargo build --release -p tracseq-ml >&2) \
            || die "build of $BEFORE_REF failed"
        cp "$BEFORE_TARGET/release/tracseq-ml" "$WORK/tracseq-ml-before"
        git -C "$ROOT" worktree remove --force "$WORK/before-src" >&2 || true
    fi
    if [ "$HELLO_ONLY" -eq 0 ]; then
        # The unauthenticated build first, copied aside; the shipped build
        # then takes its place in target/release.
        noauth=(cargo build --release -p tracseq-ml --features unauthenticated)
        log "${noauth[*]}"
        timeout 3600 "${noauth[@]}" >&2 || die "build failed"
        cp "${CARGO_TARGET_DIR:-$ROOT/target}/release/tracseq-ml" "$WORK/tracseq-ml-unauthenticated"
        build=(cargo build --release -p tracseq-ml -p tracseq-bench)
    else
        build=(cargo build --release -p tracseq-bench)
    fi
    log "${build[*]}"
    timeout 3600 "${build[@]}" >&2 || die "build failed"
fi
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
ML="${TRACSEQ_ML_BIN:-$TARGET_DIR/release/tracseq-ml}"   # override: another build
ML_NOAUTH="${TRACSEQ_ML_NOAUTH_BIN:-$WORK/tracseq-ml-unauthenticated}"
ML_BEFORE="${TRACSEQ_ML_BEFORE_BIN:-$WORK/tracseq-ml-before}"
BEFORE=0
if [ -n "$BEFORE_REF" ] || [ -n "${TRACSEQ_ML_BEFORE_BIN:-}" ]; then
    [ -x "$ML_BEFORE" ] || die "$ML_BEFORE not built"
    BEFORE=1
    BEFORE_NAME="${BEFORE_REF:-$(basename "$ML_BEFORE")}"
fi
HELLO="$TARGET_DIR/release/hello"
[ -x "$HELLO" ] || die "$HELLO not built"

# --------------------------------------------------------------- platform ---
MODEL_NAME=""
if [ "$HELLO_ONLY" -eq 0 ]; then
    [ -x "$ML" ] || die "$ML not built"
    P="$(free_port)"
    PORTS_USED="$PORTS_USED P=$P"
    DATA_DIR="$WORK/data"
    mkdir -p "$DATA_DIR"
    BASE="http://127.0.0.1:$P"
    log "starting tracseq-ml up on $BASE"
    "$ML" up --port "$P" --data-dir "$DATA_DIR" >"$WORK/platform.log" 2>&1 &
    PLATFORM_PID=$!
    wait_http "$BASE/health" "$PLATFORM_PID" "tracseq-ml up" "$WORK/platform.log"
    # The first start wrote the admin token; lab software gets a predictor one.
    ADMIN_TOKEN="$(cat "$DATA_DIR/admin.token")"
    AUTH=(-H "Authorization: Bearer $ADMIN_TOKEN")

    CSV="$WORK/samples.csv"
    timeout 120 "$ML" generate --rows "$ROWS" --seed 7 --out "$CSV" >&2 \
        || die "tracseq-ml generate failed"
    ds_json="$(curl -sf --max-time 60 "${AUTH[@]}" -X POST --data-binary "@$CSV" \
        -H 'content-type: text/csv' "$BASE/datasets?name=samples")" \
        || die "dataset upload failed"
    DATASET_ID="$(printf '%s' "$ds_json" | json_value .id)"
    [ -n "$DATASET_ID" ] && [ "$DATASET_ID" != "null" ] || die "no id in upload response: $ds_json"
    log "dataset $DATASET_ID"

    exp_body="$(experiment_body "$DATASET_ID")"
    exp_json="$(curl -sf --max-time 30 "${AUTH[@]}" -X POST -H 'content-type: application/json' \
        --data-binary "$exp_body" "$BASE/experiments")" \
        || die "POST /experiments failed"
    EXP_ID="$(printf '%s' "$exp_json" | json_get .id)"
    [ -n "$EXP_ID" ] || die "no id in experiment response: $exp_json"
    log "experiment $EXP_ID ($TRIALS trials); waiting up to ${EXPERIMENT_TIMEOUT_S}s"

    deadline=$(( SECONDS + EXPERIMENT_TIMEOUT_S ))
    state=""
    while :; do
        exp_json="$(curl -sf --max-time 10 "${AUTH[@]}" "$BASE/experiments/$EXP_ID")" || exp_json='{}'
        state="$(printf '%s' "$exp_json" | json_get .state)"
        [ "$state" = "completed" ] && break
        case "$state" in
            failed|cancelled|canceled)
                die "experiment $EXP_ID ended $state: $exp_json" ;;
        esac
        [ "$SECONDS" -lt "$deadline" ] || die "experiment $EXP_ID not completed after ${EXPERIMENT_TIMEOUT_S}s (state: ${state:-unknown})"
        sleep 2
    done
    MODEL_NAME="$(printf '%s' "$exp_json" | json_get .model_name)"
    MODEL_VERSION="$(printf '%s' "$exp_json" | json_get .model_version)"
    [ -n "$MODEL_NAME" ] && [ -n "$MODEL_VERSION" ] || die "completed experiment has no model: $exp_json"
    log "model $MODEL_NAME version $MODEL_VERSION"

    # Promote (admin asks, an approver token approves) and deploy it, so a
    # body without a version is served the deployed version.
    post_json() {   # post_json TOKEN PATH BODY
        curl -sf --max-time 30 -H "Authorization: Bearer $1" -X POST \
            -H 'content-type: application/json' --data-binary "$3" "$BASE$2"
    }
    approver_json="$(post_json "$ADMIN_TOKEN" /tokens '{"name": "bench-approver", "role": "approver"}')" \
        || die "POST /tokens (approver) failed"
    APPROVER_TOKEN="$(printf '%s' "$approver_json" | json_get .token)"
    promote_json="$(post_json "$ADMIN_TOKEN" /models/promote \
        "{\"name\": \"$MODEL_NAME\", \"version\": $MODEL_VERSION, \"stage\": \"production\", \"reason\": \"bench\"}")" \
        || die "POST /models/promote failed"
    PROMOTION_ID="$(printf '%s' "$promote_json" | json_get .id)"
    post_json "$APPROVER_TOKEN" "/promotions/$PROMOTION_ID/approve" '{}' >/dev/null \
        || die "approving promotion $PROMOTION_ID failed"
    deploy_json="$(post_json "$ADMIN_TOKEN" /models/deploy \
        "{\"name\": \"$MODEL_NAME\", \"version\": $MODEL_VERSION}")" || die "POST /models/deploy failed"
    DEPLOYMENT_ID="$(printf '%s' "$deploy_json" | json_get .deployment.id)"
    deadline=$(( SECONDS + 120 ))
    while :; do
        d_state="$(curl -sf --max-time 10 "${AUTH[@]}" "$BASE/deployments/$DEPLOYMENT_ID" | json_get .state)" || d_state=""
        [ "$d_state" = "live" ] && break
        [ "$d_state" != "failed" ] || die "deployment $DEPLOYMENT_ID failed"
        [ "$SECONDS" -lt "$deadline" ] || die "deployment $DEPLOYMENT_ID not live after 120 s (state: ${d_state:-unknown})"
        sleep 0.5
    done
    log "deployment $DEPLOYMENT_ID live"

    token_json="$(curl -sf --max-time 10 "${AUTH[@]}" -X POST -H 'content-type: application/json' \
        --data-binary '{"name": "bench-lims", "role": "predictor"}' "$BASE/tokens")" \
        || die "POST /tokens failed"
    PREDICT_TOKEN="$(printf '%s' "$token_json" | json_get .token)"
    [ -n "$PREDICT_TOKEN" ] || die "no token in POST /tokens answer"

    RECORD="$(timeout 60 "$ML" generate --example --seed 3)" || die "tracseq-ml generate --example failed"
    predict_body "$MODEL_NAME" "$RECORD" >"$BODY_FILE"
    PINNED_FILE="$WORK/body-pinned.json"
    pinned_body "$(cat "$BODY_FILE")" "$MODEL_VERSION" >"$PINNED_FILE"

    SETUP_CMDS+=(
        "cargo build --release -p tracseq-ml -p tracseq-bench"
        "target/release/tracseq-ml up --port \$P --data-dir \$D   # D=\$(mktemp -d); every call below with -H \"Authorization: Bearer \$(cat \$D/admin.token)\""
        "target/release/tracseq-ml generate --rows $ROWS --seed 7 --out samples.csv"
        "curl -sf -X POST --data-binary @samples.csv -H 'content-type: text/csv' \"http://127.0.0.1:\$P/datasets?name=samples\""
        "curl -sf -X POST -H 'content-type: application/json' -d '$exp_body' http://127.0.0.1:\$P/experiments   # then poll GET /experiments/{id} until state == completed"
        "target/release/tracseq-ml generate --example --seed 3   # features; body.json = {\"model\": model_name, \"features\": ...}"
        "curl -sf -X POST -d '{\"name\": \"bench-approver\", \"role\": \"approver\"}' http://127.0.0.1:\$P/tokens   # APPROVER = its .token"
        "curl -sf -X POST -d '{\"name\": \"$MODEL_NAME\", \"version\": $MODEL_VERSION, \"stage\": \"production\", \"reason\": \"bench\"}' http://127.0.0.1:\$P/models/promote   # then POST /promotions/{id}/approve with the APPROVER token"
        "curl -sf -X POST -d '{\"name\": \"$MODEL_NAME\", \"version\": $MODEL_VERSION}' http://127.0.0.1:\$P/models/deploy   # then poll GET /deployments/{id} until state == live"
        "curl -sf -X POST -d '{\"name\": \"bench-lims\", \"role\": \"predictor\"}' http://127.0.0.1:\$P/tokens   # BENCH_TOKEN = its .token"
    )
else
    # Same shape as the platform body; hello ignores its content.
    printf '%s\n' '{"model":"hello","features":{"example":true}}' >"$BODY_FILE"
    SETUP_CMDS+=("cargo build --release -p tracseq-bench")
fi
log "body: $(cat "$BODY_FILE")"

# ------------------------------------------------------------------ load ---
# Each server is measured alone: the platform first, then it is stopped and
# the hello baseline started, so the two never compete for the CPUs.
if [ "$HELLO_ONLY" -eq 0 ]; then
    # The first platform (which trained the model) stops; then the shipped
    # build and the unauthenticated one serve the same data dir and model in
    # turn, twice each (on, off, on, off), so drift over the run falls on
    # both alike.
    stop_pid "$PLATFORM_PID"
    PLATFORM_PID=""
    [ -x "$ML_NOAUTH" ] || die "$ML_NOAUTH not built"
    SETUP_CMDS+=(
        "cargo build --release -p tracseq-ml --features unauthenticated   # copied aside as tracseq-ml-unauthenticated before the build above"
        "# then, twice in turn: target/release/tracseq-ml up, and tracseq-ml-unauthenticated up, on the same data dir"
    )
    VARIANTS="platform pinned noauth"
    [ "$BEFORE" -eq 0 ] || VARIANTS="platform before pinned noauth"
    [ "$BEFORE" -eq 0 ] || SETUP_CMDS+=("git worktree add before $BEFORE_REF && (cd before && CARGO_TARGET_DIR=<target>/before-commit cargo build --release -p tracseq-ml)   # copied aside as tracseq-ml-before, built first")
    UNPINNED_FILE="$BODY_FILE"
    for round in 1 2; do
        for variant in $VARIANTS; do
            BODY_FILE="$UNPINNED_FILE"
            case "$variant" in
                platform) bin="$ML"; BENCH_TOKEN="$PREDICT_TOKEN" ;;
                pinned) bin="$ML"; BENCH_TOKEN="$PREDICT_TOKEN"; BODY_FILE="$PINNED_FILE" ;;
                before) bin="$ML_BEFORE"; BENCH_TOKEN="$PREDICT_TOKEN" ;;
                noauth) bin="$ML_NOAUTH"; BENCH_TOKEN="" ;;
            esac
            log "round $round: $variant"
            "$bin" up --port "$P" --data-dir "$DATA_DIR" >"$WORK/$variant-$round.log" 2>&1 &
            PLATFORM_PID=$!
            wait_http "$BASE/health" "$PLATFORM_PID" "tracseq-ml up ($variant)" "$WORK/$variant-$round.log"
            check_predict "$BASE/predict"
            run_wrk "$variant$round" "$BASE/predict" "http://127.0.0.1:\$P"
            stop_pid "$PLATFORM_PID"
            PLATFORM_PID=""
        done
    done
    BODY_FILE="$UNPINNED_FILE"
    BENCH_TOKEN=""
fi

HP="$(free_port)"
PORTS_USED="$PORTS_USED HP=$HP"
"$HELLO" --port "$HP" >"$WORK/hello.log" 2>&1 &
HELLO_PID=$!
wait_http "http://127.0.0.1:$HP/health" "$HELLO_PID" "hello" "$WORK/hello.log"
check_predict "http://127.0.0.1:$HP/predict"
SETUP_CMDS+=("target/release/hello --port \$HP")
run_wrk hello "http://127.0.0.1:$HP/predict" "http://127.0.0.1:\$HP"
stop_pid "$HELLO_PID"
HELLO_PID=""

# ---------------------------------------------------------------- report ---
CPU_MODEL="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)"
[ -n "$CPU_MODEL" ] || CPU_MODEL="unknown"
NPROC="$(nproc)"
WRK_VERSION="$( (wrk -v 2>&1 || true) | awk 'NR == 1 { print $1, $2 }')"   # wrk -v exits 1
DATE="$(date -u '+%Y-%m-%d %H:%M UTC')"
COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null | head -n 1)" ]; then
    COMMIT="$COMMIT (dirty tree)"
fi

REPORT="$WORK/section.md"
{
    echo "$SECTION"
    echo
    echo "\`bash bench/predict.sh$([ "$HELLO_ONLY" -eq 1 ] && echo ' --hello-only')$([ -n "$BEFORE_REF" ] && echo " --before $BEFORE_REF")\` — $DATE, commit $COMMIT."
    echo "Machine: nproc = $NPROC, $CPU_MODEL; $WRK_VERSION. wrk, the server and"
    echo "(for the platform row) its scheduler and workers share these CPUs; all traffic on 127.0.0.1."
    echo
    echo "| server | requests/s | p50 ms | p90 ms | p99 ms | max ms | requests | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    if [ "$HELLO_ONLY" -eq 0 ]; then
        for round in 1 2; do
            row "platform$round" "tracseq-ml \`/predict\` (model \`$MODEL_NAME\`, no version: the deployed one), predictor token checked, round $round"
            [ "$BEFORE" -eq 0 ] || row "before$round" "the same body and data dir served by \`$BEFORE_NAME\` (before: no version meant the newest), round $round"
            row "pinned$round" "the same build, body pinned to \`\"version\": $MODEL_VERSION\` (no resolution), round $round"
            row "noauth$round" "the same build with \`unauthenticated\` (no token check), no version, round $round"
        done
    fi
    row hello "warp hello-world \`/predict\` (\`bench/src/bin/hello.rs\`)"
    echo
    if [ "$HELLO_ONLY" -eq 0 ]; then
        python3 - "$(rps_of platform1)" "$(rps_of hello)" <<'PY'
import sys
p, h = float(sys.argv[1]), float(sys.argv[2])
print(f"Ratio: tracseq-ml /predict sustains {p / h:.1%} of the hello baseline's "
      f"throughput (hello is {h / p:.2f}x faster).")
PY
        python3 - "$(rps_of platform1)" "$(rps_of platform2)" "$(rps_of noauth1)" "$(rps_of noauth2)" <<'PY'
import sys
on1, on2, off1, off2 = map(float, sys.argv[1:])
on, off = (on1 + on2) / 2, (off1 + off2) / 2
spread = max(abs(on1 - on2) / on, abs(off1 - off2) / off)
print(f"Authentication: with the token checked, /predict sustains {on / off:.1%} of the "
      f"unauthenticated build's throughput over both rounds (a cost of {1 - on / off:.1%}); "
      f"the same build differs by up to {spread:.1%} between its two rounds.")
PY
        python3 - "$(rps_of platform1)" "$(rps_of platform2)" "$(rps_of pinned1)" "$(rps_of pinned2)" <<'PY'
import sys
d1, d2, p1, p2 = map(float, sys.argv[1:])
d, p = (d1 + d2) / 2, (p1 + p2) / 2
print(f"Resolving the deployed version: a body without a version sustains {d / p:.1%} of the "
      f"throughput of the same body pinned to the version, over both rounds (a cost of {1 - d / p:.1%}).")
PY
        if [ "$BEFORE" -eq 1 ]; then
            python3 - "$(rps_of platform1)" "$(rps_of platform2)" "$(rps_of before1)" "$(rps_of before2)" "$BEFORE_NAME" <<'PY'
import sys
d1, d2, b1, b2 = map(float, sys.argv[1:5])
d, b = (d1 + d2) / 2, (b1 + b2) / 2
print(f"Before and after: this build sustains {d / b:.1%} of {sys.argv[5]}'s /predict throughput "
      f"on the same body, data dir and model over both rounds ({'a cost' if d < b else 'a gain'} of {abs(1 - d / b):.1%}).")
PY
        fi
        echo
    fi
    echo "wrk: $THREADS threads, $CONNECTIONS connections, $DURATION measured after a $WARMUP warmup, per server,"
    echo "one server at a time. Body ($(wc -c <"$BODY_FILE" | tr -d ' ') bytes, content-type application/json):"
    echo
    echo '```json'
    cat "$BODY_FILE"
    echo '```'
    echo
    echo "Commands:"
    echo
    echo '```sh'
    for c in "${SETUP_CMDS[@]}"; do echo "$c"; done
    echo '```'
    echo
    echo "Ports this run:$PORTS_USED. \`body.json\` is the body above; \`bench/post.lua\` makes"
    echo "every request a POST of it with \`Content-Type: application/json\`."
} >"$REPORT"

echo
cat "$REPORT"

if [ -n "$RESULTS" ]; then
    python3 - "$RESULTS" "$REPORT" "$SECTION" <<'PY'
import os, sys
path, section_file, heading = sys.argv[1], sys.argv[2], sys.argv[3]
section = open(section_file).read().rstrip("\n") + "\n"
text = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
lines = text.splitlines(keepends=True)
start = next((i for i, l in enumerate(lines) if l.rstrip("\n") == heading), None)
if start is None:
    out = text.rstrip("\n") + "\n\n" + section
else:
    # The section ends at the next heading outside a code block (its
    # command listing has shell comments that start with "# ").
    end, fenced = len(lines), False
    for j in range(start + 1, len(lines)):
        if lines[j].startswith("```"):
            fenced = not fenced
        elif not fenced and (lines[j].startswith("## ") or lines[j].startswith("# ")):
            end = j
            break
    rest = "".join(lines[end:])
    out = "".join(lines[:start]) + section + ("\n" + rest if rest else "")
open(path, "w").write(out)
PY
    log "wrote $SECTION to $RESULTS"
fi
