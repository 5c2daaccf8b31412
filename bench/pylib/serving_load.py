"""Shared pieces of the serving benchmarks (bench/cache, bench/traffic): a
model trained on the platform itself, wrk driving `POST /predict` through
bench/post.lua, counters read from `/metrics`, and a RESULTS.md section
written in place.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

from tracseq_bench import Server, log

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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


def as_token(s, token, method, path, body=None):
    """One request with another token than the server's admin one."""
    admin, s.token = s.token, token
    try:
        return s.request(method, path, body)
    finally:
        s.token = admin


def automl(s, binary, model, trials=6, search_space=None):
    """Runs a small AutoML experiment (2,000 generated samples, `trials`
    trials; the families' default space unless `search_space` is given) on
    server `s`; returns the version it registered as `model`."""
    csv = subprocess.run([binary, "generate", "--rows", "2000", "--seed", "7"],
                         capture_output=True, check=True).stdout
    ds = s.post(f"/datasets?name={model}", csv, content_type="text/csv")
    spec = {"name": model, "dataset_id": ds["id"], "target": "quality_score",
            "budget": {"trials": trials}, "parallelism": 2, "seed": 7, "model_name": model}
    if search_space is not None:
        spec["search_space"] = search_space
    exp = s.post("/experiments", spec)
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
    return e["model_version"]


def example_features(binary, seed=11):
    out = subprocess.run([binary, "generate", "--example", "--seed", str(seed)],
                         capture_output=True, check=True, text=True).stdout
    return json.loads(out)


RUNS = [0]


def wrk_env(body_file, token, hit):
    """The environment of one wrk run: a run number of its own, so no two
    runs (warmups included) send the same cold value."""
    RUNS[0] += 1
    env = dict(os.environ, BENCH_BODY_FILE=body_file, BENCH_TOKEN=token, BENCH_RUN=str(RUNS[0]))
    if hit is not None:
        env["BENCH_HIT_PERCENT"] = str(hit)
    return env


def cpu_seconds(pid):
    """User plus system CPU seconds process `pid` has used (all threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(args, url, body_file, token, hit=None, pid=None):
    """A warmup and a measured wrk run (args: threads, connections, warmup,
    duration); returns req/s, p50/p99 ms, requests and errors, and with
    `pid` the CPU time that process spent per measured request (cpu_us)."""
    if args.threads > 9:
        sys.exit("--threads: at most 9 (cold values are made of the run, the thread and a counter)")
    lua = os.path.join(ROOT, "bench", "post.lua")
    common = ["wrk", f"-t{args.threads}", f"-c{args.connections}", "-s", lua]
    subprocess.run(common[:3] + [f"-d{args.warmup}s"] + common[3:] + [url],
                   env=wrk_env(body_file, token, hit),
                   capture_output=True, check=True, timeout=args.warmup + 60)
    cpu0 = cpu_seconds(pid) if pid else None
    out = subprocess.run(common[:3] + [f"-d{args.duration}s", "--latency"] + common[3:] + [url],
                         env=wrk_env(body_file, token, hit), capture_output=True, text=True,
                         check=True, timeout=args.duration + 60).stdout
    cpu = cpu_seconds(pid) - cpu0 if pid else None
    line = next(l for l in out.splitlines() if l.startswith("BENCH "))
    kv = dict(p.split("=", 1) for p in line.split()[1:])
    errors = sum(int(v) for k, v in kv.items() if k.startswith("errors_"))
    requests = int(kv["requests"])
    return {"rps": requests / (int(kv["duration_us"]) / 1e6),
            "p50_ms": int(kv["p50_us"]) / 1000, "p99_ms": int(kv["p99_us"]) / 1000,
            "requests": requests, "errors": errors,
            "cpu_us": 1e6 * cpu / requests if cpu is not None and requests else None}


def counter(metrics, name, **labels):
    """One sample of `/metrics` text (0 when absent)."""
    sel = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pat = r"(?m)^" + re.escape(f"{name}{{{sel}}}" if sel else name) + r" (\S+)$"
    m = re.search(pat, metrics)
    return float(m.group(1)) if m else 0.0


def write_results(path, section, text):
    """Replaces (or appends) the section headed `section` of RESULTS.md."""
    old = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
    start = old.find(section)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        nxt = old.find("\n## ", start + len(section))
        new = old[:start] + text + (old[nxt + 1:] if nxt >= 0 else "")
    with open(path, "w") as f:
        f.write(new if new.endswith("\n") else new + "\n")


def parser(doc):
    """The arguments every serving benchmark takes (the binary, wrk's load,
    where the results go)."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--binary", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "tracseq-ml"))
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--results", default=os.path.join(ROOT, "bench", "RESULTS.md"))
    return ap


def checked(args):
    """`args`, once the binary is built and wrk is installed."""
    if not os.access(args.binary, os.X_OK):
        sys.exit(f"{args.binary} is not built (cargo build --release --features torch)")
    ensure_wrk()
    return args
