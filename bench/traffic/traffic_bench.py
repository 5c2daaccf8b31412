#!/usr/bin/env python3
"""What a traffic policy costs `/predict`: req/s and latency of requests
that name no version, served by a plain platform deployment, by an A/B
deployment with two variants, and by the same A/B deployment with a shadow,
in one run, rounds interleaved.

One `tracseq-ml up` (embedded: SQLite, the prediction log on). A small
AutoML run (6 trials on 2,000 generated lab samples) registers version 1;
versions 2 and 3 are registered from version 1's artifact
(`POST /models/register`), so every arm and the shadow run the same model
and the figures show what routing and shadowing cost, not a difference
between models. Version 1 is promoted to production (requested by the
admin token, approved by an approver token), 2 and 3 to staging. Each
measurement deploys version 1 again with its policy (`POST /models/deploy`,
waits until live and until the replica serves it), then runs wrk
(bench/post.lua) with a predictor token and no entity id, so each request
is assigned an arm at random. Rows: plain (no policy), A/B (version 2 as
variant `b` at 50%), A/B + shadow (version 3 shadowing, timeout 1 s).

Usage: python3 bench/traffic/traffic_bench.py [--binary PATH] [--duration 10]
         [--warmup 2] [--threads 2] [--connections 32] [--rounds 2]
         [--results FILE]
Writes the "## Traffic policies" section of bench/RESULTS.md (or --results).
"""

import datetime
import json
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "bench", "pylib"))
from tracseq_bench import Server, git_commit, log, machine  # noqa: E402
from serving_load import (as_token, automl, checked, counter, example_features,  # noqa: E402
                          parser, run_wrk, write_results)

SECTION = "## Traffic policies"
MODEL = "bench-traffic"

POLICIES = [
    ("plain", None),
    ("A/B, two variants", {"split": [{"variant": "b", "version": 2, "weight": 50}]}),
    ("A/B + shadow", {"split": [{"variant": "b", "version": 2, "weight": 50}],
                      "shadow": {"version": 3, "timeout_ms": 1000}}),
]


def prepare(s, binary):
    """Versions 1 to 3 of MODEL (one artifact), 1 in production, 2 and 3 in
    staging. Returns (family, predictor token)."""
    v1 = automl(s, binary, MODEL)
    record = next(v for v in s.get(f"/models/{MODEL}")["versions"] if v["version"] == v1)
    for _ in (2, 3):
        s.post("/models/register", {"name": MODEL, "sha256": record["sha256"],
                                    "artifact_path": record["artifact_path"]})
    approver = s.post("/tokens", {"name": "bench-approver", "role": "approver"})["token"]
    predictor = s.post("/tokens", {"name": "bench-predictor", "role": "predictor"})["token"]
    ask = s.post("/models/promote", {"name": MODEL, "version": v1, "stage": "production",
                                     "reason": "benchmark"})
    as_token(s, approver, "POST", f"/promotions/{ask['id']}/approve", {"reason": "benchmark"})
    for v in (v1 + 1, v1 + 2):
        s.post("/models/promote", {"name": MODEL, "version": v, "stage": "staging",
                                   "reason": "benchmark arm"})
    return record.get("family", "?"), predictor, v1


def deploy(s, version, traffic, predictor, features):
    body = {"name": MODEL, "version": version}
    if traffic:
        body["traffic"] = traffic
    d = s.post("/models/deploy", body)["deployment"]
    deadline = time.time() + 120
    while s.get(f"/deployments/{d['id']}")["state"] != "live":
        if time.time() > deadline:
            raise RuntimeError(f"deployment {d['id']} did not go live")
        time.sleep(0.2)
    # The replica reads live deployments every 500 ms: wait until it
    # answers through this one.
    want = {"primary"} | {a["variant"] for a in (traffic or {}).get("split", [])}
    for _ in range(200):
        seen = {as_token(s, predictor, "POST", "/predict",
                         {"model": MODEL, "features": features})["variant"] for _ in range(20)}
        if seen == want:
            return d["id"]
        time.sleep(0.1)
    raise RuntimeError(f"the replica never answered through {d['id']} (saw {seen})")


def measure(args, s, version, predictor, features, data_dir):
    body_file = os.path.join(data_dir, "body.json")
    with open(body_file, "w") as f:
        json.dump({"model": MODEL, "features": features}, f)
    rows = []
    for rnd in range(1, args.rounds + 1):
        for name, traffic in POLICIES:
            deploy(s, version, traffic, predictor, features)
            before = s.request("GET", "/metrics", raw=True).decode()
            r = run_wrk(args, f"http://127.0.0.1:{s.port}/predict", body_file, predictor)
            time.sleep(1.5)  # the shadow copies and the log catch up
            after = s.request("GET", "/metrics", raw=True).decode()
            delta = {k: counter(after, "tracseq_shadow_requests_total", result=k)
                     - counter(before, "tracseq_shadow_requests_total", result=k)
                     for k in ("started", "failed", "timed_out", "skipped")}
            r["shadow"] = delta
            r["dropped"] = (counter(after, "tracseq_prediction_log_dropped_total")
                            - counter(before, "tracseq_prediction_log_dropped_total"))
            r["policy"], r["round"] = name, rnd
            log(f"round {rnd} {name}: {r['rps']:.0f} req/s, p99 {r['p99_ms']:.2f} ms, "
                f"shadow {delta}, log drops {r['dropped']:.0f}")
            rows.append(r)
    return rows


def report(args, rows, family):
    plain = sum(r["rps"] for r in rows if r["policy"] == "plain") / args.rounds
    lines = [
        SECTION, "",
        f"`python3 bench/traffic/traffic_bench.py --duration {args.duration} --warmup {args.warmup} "
        f"--threads {args.threads} --connections {args.connections} --rounds {args.rounds}` — "
        f"{datetime.date.today().isoformat()}, commit {git_commit(ROOT)}, {machine()}; "
        "wrk and the server share the machine's cores.",
        "",
        f"`POST /predict` of `{MODEL}` without a version or entity id (each request gets "
        f"an arm at random), predictor token, prediction log on; every arm and the shadow "
        f"run one artifact ({family}, the AutoML winner of 6 trials on 2,000 generated "
        "samples), so the rows differ only in routing and shadowing. Shadow columns: copies "
        "started, failed or timed out, and skipped (more than 256 running) during the "
        "measured run and its warmup.",
        "",
        "| round | policy | req/s | vs plain (mean) | p50 ms | p99 ms | requests | errors "
        "| shadow copies | shadow failed / timed out / skipped | log drops |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        sh = r["shadow"]
        lines.append(
            f"| {r['round']} | {r['policy']} | {r['rps']:,.0f} | {100 * r['rps'] / plain:.0f}% | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['requests']:,} | {r['errors']} | "
            f"{sh['started']:,.0f} | {sh['failed']:.0f} / {sh['timed_out']:.0f} / "
            f"{sh['skipped']:,.0f} | {r['dropped']:,.0f} |")
    means = {}
    for name, _ in POLICIES:
        xs = [r["rps"] for r in rows if r["policy"] == name]
        means[name] = sum(xs) / len(xs)
    lines += ["", "Means over the rounds: " + "; ".join(
        f"{n} {m:,.0f} req/s ({100 * m / means['plain']:.0f}% of plain)" for n, m in means.items())
        + "."]
    return "\n".join(lines) + "\n"


def main():
    ap = parser(__doc__)
    ap.add_argument("--rounds", type=int, default=2)
    args = checked(ap.parse_args())
    data_dir = tempfile.mkdtemp(prefix="tracseq-bench-traffic-")
    try:
        with Server(args.binary, data_dir=data_dir) as s:
            family, predictor, version = prepare(s, args.binary)
            features = example_features(args.binary)
            rows = measure(args, s, version, predictor, features, data_dir)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    text = report(args, rows, family)
    print(text)
    write_results(args.results, SECTION, text)


if __name__ == "__main__":
    main()
