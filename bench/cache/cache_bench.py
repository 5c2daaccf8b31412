#!/usr/bin/env python3
"""The prediction cache under load: `POST /predict` req/s and latency at a
0%, 70% and 100% hit rate, with the in-process cache and with the shared
Redis tier, next to the same server without a cache, in one run.

One model, trained by a small AutoML run (6 trials on 2,000 generated lab
samples) on the platform itself, then served by three starts of
`tracseq-ml up` over the same data directory: no cache
(`serving.cache_entries = 0`), the in-process cache (100,000 entries), and
the Redis tier alone (a private `redis-server` on a free port, emptied
before each measurement, no in-process tier, so every lookup goes to
Redis). Every request carries a predictor token, pins the version, and is
logged like any other. The hit rate is the share of requests that repeat
one record (bench/post.lua with BENCH_HIT_PERCENT); the others carry a
value no request used before, so they always miss and are computed.

Usage: python3 bench/cache/cache_bench.py [--binary PATH] [--duration 10]
         [--warmup 2] [--threads 2] [--connections 32] [--results FILE]
The binary defaults to this checkout's release build (build it first:
`cargo build --release --features torch`). Writes the "## Prediction cache"
section of bench/RESULTS.md (or --results); wrk is installed with apt-get
when missing.
"""

import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "bench", "pylib"))
from tracseq_bench import Server, free_port, git_commit, log, machine  # noqa: E402
from serving_load import (automl, checked, counter, example_features,  # noqa: E402
                          parser, run_wrk, write_results)

SECTION = "## Prediction cache"
MODEL = "bench-cache"
VARIED = "sample_age_days"


class Redis:
    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="tracseq-bench-redis-")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            if self.cli("PING") == "PONG":
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def cli(self, *args):
        r = subprocess.run(["redis-cli", "-p", str(self.port), *args],
                           capture_output=True, text=True)
        return r.stdout.strip()

    def url(self):
        return f"redis://127.0.0.1:{self.port}/"

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


def train(binary, data_dir):
    """Trains the model on a first start; returns (version, family, features)."""
    with Server(binary, data_dir=data_dir) as s:
        version = automl(s, binary, MODEL)
        family = s.get(f"/models/{MODEL}")["versions"][-1].get("family", "?")
    return version, family, example_features(binary)


def measure(args, binary, data_dir, version, features, redis):
    modes = [
        # The same load shapes without a cache: wrk builds a new body for
        # each cold request, and that client work shares the cores too.
        ("no cache", {"TRACSEQ_SERVING_CACHE_ENTRIES": "0"}, [0, 100]),
        ("in-process", {"TRACSEQ_SERVING_CACHE_ENTRIES": "100000"}, [0, 70, 100]),
        ("Redis", {"TRACSEQ_SERVING_CACHE_ENTRIES": "0",
                   "TRACSEQ_SERVING_REDIS_URL": redis.url()}, [0, 70, 100]),
    ]
    rows = []
    for name, env, hits in modes:
        with Server(binary, env=env, data_dir=data_dir) as s:
            token = s.post("/tokens", {"name": f"bench-{s.port}", "role": "predictor"})["token"]
            for hit in hits:
                feats = dict(features)
                if hit is not None:
                    feats[VARIED] = "__V__"
                body = {"model": MODEL, "version": version, "features": feats}
                body_file = os.path.join(data_dir, "body.json")
                with open(body_file, "w") as f:
                    json.dump(body, f)
                if name == "Redis":
                    redis.cli("FLUSHALL")
                before = s.request("GET", "/metrics", raw=True).decode()
                r = run_wrk(args, f"http://127.0.0.1:{s.port}/predict", body_file, token, hit)
                after = s.request("GET", "/metrics", raw=True).decode()
                hits_seen = sum(counter(after, "tracseq_prediction_cache_hits_total",
                                        model=MODEL, tier=t)
                                - counter(before, "tracseq_prediction_cache_hits_total",
                                          model=MODEL, tier=t)
                                for t in ("memory", "redis"))
                misses = (counter(after, "tracseq_prediction_cache_misses_total", model=MODEL)
                          - counter(before, "tracseq_prediction_cache_misses_total", model=MODEL))
                lookups = hits_seen + misses
                r["measured_hit"] = hits_seen / lookups if lookups else None
                r["mode"], r["hit"] = name, hit
                log(f"{name} hit {hit}: {r['rps']:.0f} req/s, p99 {r['p99_ms']:.2f} ms, "
                    f"measured hit ratio {r['measured_hit']}")
                rows.append(r)
    return rows


def report(args, rows, family, version):
    base = {r["hit"]: r["rps"] for r in rows if r["mode"] == "no cache"}
    lines = [
        SECTION, "",
        f"`python3 bench/cache/cache_bench.py --duration {args.duration} --warmup {args.warmup} "
        f"--threads {args.threads} --connections {args.connections}` — "
        f"{datetime.date.today().isoformat()}, commit {git_commit(ROOT)}, {machine()}; "
        f"wrk and the server share the machine's cores.",
        "",
        f"`POST /predict` of model `{MODEL}` version {version} ({family}, the AutoML "
        "winner of 6 trials on 2,000 generated samples), pinned, predictor token, "
        "prediction log on. Hit rate: the share of requests repeating one record; "
        "the rest carry a value never sent before and are computed. \"Measured\" is "
        "the server's own hit ratio over the run (from `/metrics`).",
        "",
        "\"vs no cache\": against the server without a cache under the same load shape "
        "(70% is set against the 0% and 100% shapes weighted 30:70).",
        "",
        "| cache | hit rate | measured | req/s | vs no cache | p50 ms | p99 ms | requests | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        # The no-cache rate of this load shape (a 70:30 mix of the two pure ones).
        h = r["hit"] / 100
        same_shape = 1 / (h / base[100] + (1 - h) / base[0])
        hit = "—" if r["hit"] is None else f"{r['hit']}%"
        measured = "—" if r["mode"] == "no cache" else f"{100 * (r['measured_hit'] or 0):.1f}%"
        lines.append(f"| {r['mode']} | {hit} | {measured} | {r['rps']:,.0f} | "
                     f"{100 * r['rps'] / same_shape:.0f}% | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                     f"{r['requests']:,} | {r['errors']} |")
    return "\n".join(lines) + "\n"


def main():
    ap = parser(__doc__)
    args = checked(ap.parse_args())
    data_dir = tempfile.mkdtemp(prefix="tracseq-bench-cache-")
    redis = Redis()
    try:
        version, family, features = train(args.binary, data_dir)
        rows = measure(args, args.binary, data_dir, version, features, redis)
    finally:
        redis.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    text = report(args, rows, family, version)
    print(text)
    write_results(args.results, SECTION, text)


if __name__ == "__main__":
    main()
