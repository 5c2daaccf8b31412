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

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "bench", "pylib"))
from tracseq_bench import Server, free_port, git_commit, log, machine  # noqa: E402

SECTION = "## Prediction cache"
MODEL = "bench-cache"
VARIED = "sample_age_days"


def ensure_wrk():
    if shutil.which("wrk"):
        return
    log("wrk not found; installing with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], env=env, check=False,
                   stdout=subprocess.DEVNULL)
    if not shutil.which("wrk"):
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], env=env, check=True)


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
    """Trains the model on a first start; returns (version, features)."""
    with Server(binary, data_dir=data_dir) as s:
        csv = subprocess.run([binary, "generate", "--rows", "2000", "--seed", "7"],
                             capture_output=True, check=True).stdout
        ds = s.post("/datasets?name=bench-cache", csv, content_type="text/csv")
        exp = s.post("/experiments", {
            "name": "bench-cache", "dataset_id": ds["id"], "target": "quality_score",
            "budget": {"trials": 6}, "parallelism": 2, "seed": 7, "model_name": MODEL})
        deadline = time.time() + 600
        while True:
            e = s.get(f"/experiments/{exp['id']}")
            if e["state"] in ("completed", "failed", "cancelled"):
                break
            if time.time() > deadline:
                raise RuntimeError("the AutoML run did not finish in 10 minutes")
            time.sleep(1)
        if e["state"] != "completed":
            raise RuntimeError(f"AutoML {e['state']}: {e.get('error')}")
        version = e["model_version"]
        family = s.get(f"/models/{MODEL}")["versions"][-1].get("family", "?")
    example = subprocess.run([binary, "generate", "--example", "--seed", "11"],
                             capture_output=True, check=True, text=True).stdout
    return version, family, json.loads(example)


RUNS = [0]


def wrk_env(body_file, token, hit):
    """The environment of one wrk run: a run number of its own, so no two
    runs (warmups included) send the same cold value."""
    RUNS[0] += 1
    env = dict(os.environ, BENCH_BODY_FILE=body_file, BENCH_TOKEN=token, BENCH_RUN=str(RUNS[0]))
    if hit is not None:
        env["BENCH_HIT_PERCENT"] = str(hit)
    return env


def run_wrk(args, url, body_file, token, hit):
    if args.threads > 9:
        sys.exit("--threads: at most 9 (cold values are made of the run, the thread and a counter)")
    lua = os.path.join(ROOT, "bench", "post.lua")
    common = ["wrk", f"-t{args.threads}", f"-c{args.connections}", "-s", lua]
    subprocess.run(common[:3] + [f"-d{args.warmup}s"] + common[3:] + [url],
                   env=wrk_env(body_file, token, hit),
                   capture_output=True, check=True, timeout=args.warmup + 60)
    out = subprocess.run(common[:3] + [f"-d{args.duration}s", "--latency"] + common[3:] + [url],
                         env=wrk_env(body_file, token, hit), capture_output=True, text=True,
                         check=True, timeout=args.duration + 60).stdout
    line = next(l for l in out.splitlines() if l.startswith("BENCH "))
    kv = dict(p.split("=", 1) for p in line.split()[1:])
    errors = sum(int(v) for k, v in kv.items() if k.startswith("errors_"))
    return {"rps": int(kv["requests"]) / (int(kv["duration_us"]) / 1e6),
            "p50_ms": int(kv["p50_us"]) / 1000, "p99_ms": int(kv["p99_us"]) / 1000,
            "requests": int(kv["requests"]), "errors": errors}


def counter(metrics, name, **labels):
    sel = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pat = re.escape(f"{name}{{{sel}}}" if sel else name) + r" (\S+)"
    m = re.search(pat, metrics)
    return float(m.group(1)) if m else 0.0


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


def write_results(path, text):
    old = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
    start = old.find(SECTION)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        nxt = old.find("\n## ", start + len(SECTION))
        new = old[:start] + text + (old[nxt + 1:] if nxt >= 0 else "")
    with open(path, "w") as f:
        f.write(new if new.endswith("\n") else new + "\n")


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
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "tracseq-ml"))
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--results", default=os.path.join(ROOT, "bench", "RESULTS.md"))
    args = ap.parse_args()
    if not os.access(args.binary, os.X_OK):
        sys.exit(f"{args.binary} is not built (cargo build --release --features torch)")
    ensure_wrk()
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
    write_results(args.results, text)


if __name__ == "__main__":
    main()
