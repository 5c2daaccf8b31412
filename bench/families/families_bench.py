#!/usr/bin/env python3
"""`POST /predict` for every model family against a constant-answer warp
server, with the prediction log on, in one run, and where the time goes.

One version of the sample-quality model per family (linear, gbm,
random_forest, xgboost, lightgbm, nn), each trained on the platform itself
by a small AutoML run (2,000 generated lab samples) whose search space holds
that family alone, with the family's default hyperparameters elsewhere.
Then one `tracseq-ml up` (embedded: SQLite, the prediction log on as
shipped, no prediction cache) serves them all while wrk drives `POST
/predict` with a predictor token, pinned to each version, with the same
generated sample as the body: once as shipped (the answer carries its
per-feature contributions) and once with `"explain": false`. The baseline
is `bench/src/bin/hello.rs` (warp, parses the same body as JSON, answers
`{"value": 0.5}`), measured before every family and once at the end; each
ratio is against the mean of the two baseline rounds around it. The
prediction log's written and dropped counters (from `/metrics`) are read
around every run: every answered request must be written, none dropped.
A second start with the log off (`serving.log = false`) serves the plain
answers again, so the table shows what the log costs; every row gives the
server's CPU time per request (from /proc, all its threads).

With --profile, `perf record` (cpu-clock, 999 Hz, the server process only)
samples the server during two more runs per family (explained and plain,
at most 5 s each, after the measured ones: sampling slows the server) and
the table gives the share of the server's samples per part of the request
path (symbols grouped by crate and function name; see GROUPS).

Usage: python3 bench/families/families_bench.py [--binary PATH]
         [--duration 10] [--warmup 2] [--threads 2] [--connections 32]
         [--trials 2] [--profile] [--results FILE]
Writes the "## /predict per model family" section of bench/RESULTS.md (or
--results). Build first: `cargo build --release --features torch` (the
binaries `tracseq-ml` and `hello` of the same target directory).
"""

import copy
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "bench", "pylib"))
from tracseq_bench import Server, free_port, git_commit, log, machine  # noqa: E402
from serving_load import (as_token, automl, checked, counter, example_features,  # noqa: E402
                          parser, run_wrk, write_results)

SECTION = "## /predict per model family"
FAMILIES = ["linear", "gbm", "random_forest", "xgboost", "lightgbm", "nn"]

# Where a sample of the server goes, first match wins (symbol text, as
# `perf report` prints it with its shared object).
GROUPS = [
    ("contributions", r"contributions_row|integrated_gradients|explain_row|tree_shap|saabas"),
    ("model", r"predict_row|logits|::apply|output_from_margin|margin_row"),
    ("features: encode", r"encode_row|FeatureValue|feature_position|preprocess"),
    ("prediction log (SQLite)", r"sqlite3|libsqlite|sqlx_sqlite|prediction_logs|walChecksum|Btree|Vdbe|pcache"),
    ("JSON decode", r"serde_json::de|serde_json::read|from_slice|deserialize|Deserialize"),
    ("JSON encode", r"serde_json::ser|serialize|Serialize|format_escaped|ryu|itoa"),
    ("hashing (token, cache)", r"sha2|sha256|Sha256|ring::"),
    ("allocation", r"malloc|free|realloc|_int_|alloc::|memcpy|memmove|memset|cfree"),
    ("HTTP (hyper, warp)", r"hyper|warp|http::|httparse|h1::|bytes::"),
    ("runtime (tokio)", r"tokio|mio|parking_lot|futures"),
    ("kernel (network, scheduling)", r"\[kernel|\[k\]|kallsyms"),
]


def family_space(family):
    return {"family": {"type": "categorical", "choices": [family]}}


def train_all(binary, data_dir, trials):
    """One model per family; returns {family: (model, version)}."""
    out = {}
    with Server(binary, data_dir=data_dir) as s:
        for family in FAMILIES:
            model = f"bench-{family.replace('_', '-')}"
            t0 = time.time()
            version = automl(s, binary, model, trials=trials, search_space=family_space(family))
            got = next(v for v in s.get(f"/models/{model}")["versions"]
                       if v["version"] == version).get("family", "?")
            if got != family:
                raise RuntimeError(f"{model}: trained {got}, not {family}")
            log(f"{family}: version {version} in {time.time() - t0:.0f} s")
            out[family] = (model, version)
    return out


class Hello:
    def __init__(self, binary):
        self.port = free_port()
        self.proc = subprocess.Popen([binary, "--port", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import urllib.request
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1)
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("hello did not start")

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


class Profile:
    """perf record of one process while a `with` block runs."""

    def __init__(self, pid, path):
        self.pid, self.path = pid, path

    def __enter__(self):
        self.proc = subprocess.Popen(
            ["perf", "record", "-e", "cpu-clock", "-F", "999", "-p", str(self.pid),
             "-o", self.path, "--", "sleep", "3600"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        self.proc.send_signal(2)
        self.proc.wait(timeout=120)


def groups_of(perf_data):
    """Share of samples per group of GROUPS (and `other`)."""
    out = subprocess.run(["perf", "report", "-i", perf_data, "--stdio", "--no-children",
                          "--sort", "dso,symbol", "--percent-limit", "0"],
                         capture_output=True, text=True, check=True).stdout
    shares, top = Counter(), []
    for line in out.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*)$", line)
        if not m:
            continue
        pct, dso = float(m.group(1)), m.group(2)
        sym = re.sub(r"(\s+-)+\s*$", "", m.group(3)).strip()
        text = f"{dso} {sym}"
        if dso.startswith("[kernel"):
            text = "[kernel " + sym
        name = next((g for g, pat in GROUPS if re.search(pat, text)), "other")
        shares[name] += pct
        if len(top) < 8:
            top.append((pct, re.sub(r"\s+", " ", sym)[:90]))
    return shares, top


def measure(args, binary, hello_bin, data_dir, models, features, work):
    rows, hellos, profiles = [], [], {}
    hello = Hello(hello_bin)

    def body_file(name, body):
        path = os.path.join(work, name)
        with open(path, "w") as f:
            json.dump(body, f)
        return path

    def body_of(family, explain):
        model, version = models[family]
        body = {"model": model, "version": version, "features": features}
        if not explain:
            body["explain"] = False
        return body

    hello_body = body_file("hello.json", {"model": "hello", "features": features})

    def baseline():
        r = run_wrk(args, f"http://127.0.0.1:{hello.port}/predict", hello_body, "",
                    pid=hello.proc.pid)
        log(f"hello: {r['rps']:.0f} req/s, p99 {r['p99_ms']:.2f} ms, {r['cpu_us']:.1f} us CPU")
        hellos.append(r)

    def one(s, token, family, explain, logged):
        path = body_file(f"{family}-{explain}.json", body_of(family, explain))
        before = s.request("GET", "/metrics", raw=True).decode()
        r = run_wrk(args, f"http://127.0.0.1:{s.port}/predict", path, token, pid=s.proc.pid)
        # Let the writer finish the run's last batch.
        time.sleep(1.0)
        after = s.request("GET", "/metrics", raw=True).decode()
        d = {k: counter(after, f"tracseq_prediction_log_{k}_total")
             - counter(before, f"tracseq_prediction_log_{k}_total")
             for k in ("written", "dropped")}
        r.update(family=family, explain=explain, log=logged, hello_index=len(hellos) - 1,
                 written=int(d["written"]), dropped=int(d["dropped"]))
        log(f"{family} explain={explain} log={logged}: {r['rps']:.0f} req/s, "
            f"p99 {r['p99_ms']:.2f} ms, {r['cpu_us']:.1f} us CPU, log written "
            f"{r['written']}, dropped {r['dropped']}")
        rows.append(r)

    try:
        with Server(binary, data_dir=data_dir, env={"TRACSEQ_SERVING_CACHE_ENTRIES": "0"}) as s:
            token = s.post("/tokens", {"name": "bench-lims", "role": "predictor"})["token"]
            for family in FAMILIES:
                baseline()
                # One request, so the version is loaded before wrk's warmup.
                as_token(s, token, "POST", "/predict", body_of(family, True))
                for explain in (True, False):
                    one(s, token, family, explain, True)
            baseline()
            if args.profile:
                # Separate runs: sampling slows the server, so no measured
                # row is taken under the profiler.
                short = copy.copy(args)
                short.duration = min(args.duration, 5)
                for family in FAMILIES:
                    with Profile(s.proc.pid, os.path.join(work, f"{family}.perf")) as perf:
                        for explain in (True, False):
                            path = body_file(f"{family}-{explain}.json", body_of(family, explain))
                            run_wrk(short, f"http://127.0.0.1:{s.port}/predict", path, token)
                    profiles[family] = groups_of(perf.path)
        # The same answers without the prediction log: what the log costs.
        env = {"TRACSEQ_SERVING_CACHE_ENTRIES": "0", "TRACSEQ_SERVING_LOG": "false"}
        with Server(binary, data_dir=data_dir, env=env) as s:
            token = s.post("/tokens", {"name": "bench-lims-nolog", "role": "predictor"})["token"]
            for family in FAMILIES:
                baseline()
                as_token(s, token, "POST", "/predict", body_of(family, False))
                one(s, token, family, False, False)
            baseline()
    finally:
        hello.close()
    return rows, hellos, profiles


def report(args, rows, hellos, profiles, models):
    def pct(x):
        return f"{100 * x:.0f}%"

    mean_hello = sum(h["rps"] for h in hellos) / len(hellos)
    hello_cpu = sum(h["cpu_us"] for h in hellos) / len(hellos)
    lines = [
        SECTION, "",
        f"`python3 bench/families/families_bench.py --duration {args.duration} "
        f"--warmup {args.warmup} --threads {args.threads} --connections {args.connections} "
        f"--trials {args.trials}{' --profile' if args.profile else ''}` — "
        f"{datetime.date.today().isoformat()}, commit {git_commit(ROOT)}, {machine()}; "
        "wrk and the servers share the machine's cores.",
        "",
        "`POST /predict` of one version per family of the sample-quality model (each the "
        f"AutoML winner of {args.trials} trial(s) on 2,000 generated samples, the family alone "
        "in the search space), pinned, predictor token checked, no cache, one generated "
        "sample as the body. \"explained\": as shipped, the answer carries every feature's "
        "contribution; \"plain\": the body says `\"explain\": false`. \"log\": the "
        "prediction log on (SQLite, as shipped) or off (a second start with "
        "`serving.log = false`, to show what the log costs). Baseline: "
        "`bench/src/bin/hello.rs` (warp, parses the same body as JSON, answers a constant), "
        "measured before each family's rows and after the last of each pass; \"vs hello\" "
        "is against the mean of the two rounds around the row (the machine's speed drifts "
        "over a run). \"CPU µs\": the server process's CPU time (all its "
        "threads, the log's writer and SQLite included) per answered request over the "
        "measured run. \"logged\": predictions the log wrote during the run (warmup "
        "included), and dropped.",
        "",
        "| family | version | answer | log | req/s | vs hello | CPU µs | p50 ms | p99 ms "
        "| requests | errors | logged | log drops |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        around = hellos[r["hello_index"]]["rps"], hellos[r["hello_index"] + 1]["rps"]
        r["ratio"] = r["rps"] / (sum(around) / 2)
        lines.append(
            f"| {r['family']} | {models[r['family']][1]} | "
            f"{'explained' if r['explain'] else 'plain'} | {'on' if r['log'] else 'off'} | "
            f"{r['rps']:,.0f} | {pct(r['ratio'])} | {r['cpu_us']:.1f} | {r['p50_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {r['requests']:,} | {r['errors']} | "
            f"{r['written']:,} | {r['dropped']} |")
    lines += [
        "",
        "Baseline rounds: " + ", ".join(f"{h['rps']:,.0f}" for h in hellos) + " req/s "
        f"(mean {mean_hello:,.0f}; {hello_cpu:.1f} µs of CPU per request; p99 "
        f"{max(h['p99_ms'] for h in hellos):.2f} ms at most).",
        "",
    ]
    for explain, logged, label in ((True, True, "explained, log on"),
                                   (False, True, "plain, log on"),
                                   (False, False, "plain, log off")):
        group = [r for r in rows if r["explain"] == explain and r["log"] == logged]
        if group:
            w = min(group, key=lambda r: r["ratio"])
            lines.append(f"- Slowest family {label}: {w['family']} at {pct(w['ratio'])} of "
                         "the baseline.")
    if profiles:
        names = [g for g, _ in GROUPS] + ["other"]
        lines += [
            "",
            "Where the server's time goes (`perf record -e cpu-clock -F 999` on the server "
            "process over two more log-on runs of the family, explained and plain, after the "
            "measured ones; share of its samples):",
            "",
            "| part | " + " | ".join(FAMILIES) + " |",
            "|---|" + "---|" * len(FAMILIES),
        ]
        for g in names:
            lines.append(f"| {g} | " + " | ".join(
                f"{profiles[f][0].get(g, 0.0):.1f}%" for f in FAMILIES) + " |")
        lines += ["", "Hottest symbols per family:", ""]
        for f in FAMILIES:
            lines.append(f"- {f}: " + "; ".join(f"{p:.1f}% `{s}`" for p, s in profiles[f][1]))
    return "\n".join(lines) + "\n"


def main():
    ap = parser(__doc__)
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--profile", action="store_true")
    args = checked(ap.parse_args())
    hello_bin = os.path.join(os.path.dirname(args.binary), "hello")
    if not os.access(hello_bin, os.X_OK):
        sys.exit(f"{hello_bin} is not built (cargo build --release -p tracseq-bench)")
    if args.profile and not shutil.which("perf"):
        sys.exit("--profile needs perf (Debian's linux-perf)")
    data_dir = tempfile.mkdtemp(prefix="tracseq-bench-families-")
    work = tempfile.mkdtemp(prefix="tracseq-bench-families-work-")
    try:
        models = train_all(args.binary, data_dir, args.trials)
        features = example_features(args.binary)
        rows, hellos, profiles = measure(args, args.binary, hello_bin, data_dir, models,
                                         features, work)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    text = report(args, rows, hellos, profiles, models)
    print(text)
    write_results(args.results, SECTION, text)


if __name__ == "__main__":
    main()
