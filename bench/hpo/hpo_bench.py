"""HPO quality and ask cost: Optuna's TPESampler (in-process) against TracSeq ML's
TPE through its HTTP ask/tell API, side by side in one run.

Quality: each problem is minimised for --trials trials per seed by every
sampler; the table gives the median and interquartile range over seeds of the
best value found after 25, 50 and 100 trials (lower is better; the known
optimum is in each heading). Both sides work the same way: ask for a full
parameter set, evaluate, tell the value, one trial at a time.

Ask cost: a study/experiment is given N told trials of a cheap objective on a
6-parameter mixed space, then K more asks are timed one at a time (each told
before the next). Optuna: `study.ask(distributions)` (sampling every parameter)
in-process. TracSeq: the HTTP round trip of `POST /experiments/{id}/ask`
(sampling, storing the trial, JSON both ways over keep-alive HTTP/1.1 on
127.0.0.1), next to the round trip of `GET /health` as the HTTP floor. How
the N trials are made does not matter to the ask that follows, so they are
made cheaply: Optuna's with `study.add_trials` (random parameters), ours with
`n_startup_trials = N` (the first N asks sample at random, the timed ones
run TPE).
"""

import argparse
import json
import math
import os
import platform
import random
import statistics
import sys
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from tracseq_bench import ApiError, Server, git_commit, log, machine, quantiles  # noqa: E402

import optuna  # noqa: E402
from optuna.distributions import (CategoricalDistribution, FloatDistribution,  # noqa: E402
                                  IntDistribution)

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

# ---------------------------------------------------------------- problems


def branin(p):
    x1, x2 = p["x1"], p["x2"]
    b, c = 5.1 / (4 * math.pi ** 2), 5 / math.pi
    return (x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10


HART_A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
          [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
HART_P = [[0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
          [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
          [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
          [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381]]
HART_ALPHA = [1.0, 1.2, 3.0, 3.2]


def hartmann6(p):
    x = [p[f"x{i}"] for i in range(6)]
    total = 0.0
    for a, pp, al in zip(HART_A, HART_P, HART_ALPHA):
        total -= al * math.exp(-sum(ai * (xi - pi) ** 2 for ai, xi, pi in zip(a, x, pp)))
    return total


def log_quadratic(p):
    # A correlated quadratic in log10 space, like tuning learning rate, weight
    # decay and a scale that span seven decades: optimum 0 at lr = 10^-2.5,
    # wd = 10^-3.7, scale = 10^0.5.
    u = math.log10(p["lr"]) + 2.5
    v = math.log10(p["wd"]) + 3.7
    w = math.log10(p["scale"]) - 0.5
    return u * u + 0.5 * v * v + 0.25 * w * w + 0.5 * u * v


MIXED_BASE = {"sgd": 1.0, "momentum": 0.5, "adam": 0.0, "rmsprop": 0.3}
MIXED_LR = {"sgd": -1.0, "momentum": -1.5, "adam": -3.0, "rmsprop": -2.5}


def mixed(p):
    # Categorical x int x float x log-float, with the best learning rate
    # depending on the optimiser: optimum 0 at adam, lr 1e-3, 4 layers, dropout 0.2.
    opt = p["optimizer"]
    return (MIXED_BASE[opt] + 0.5 * (math.log10(p["lr"]) - MIXED_LR[opt]) ** 2
            + 0.04 * (int(p["layers"]) - 4) ** 2 + 3.0 * (p["dropout"] - 0.2) ** 2)


def f(low, high, log=False):
    return {"type": "float", "low": low, "high": high, **({"log": True} if log else {})}


def i(low, high, log=False):
    return {"type": "int", "low": low, "high": high, **({"log": True} if log else {})}


def cat(choices):
    return {"type": "categorical", "choices": list(choices)}


PROBLEMS = {
    "branin": {
        "title": "Branin (2-D, optimum 0.397887)",
        "fn": branin, "optimum": 0.397887,
        "space": {"x1": f(-5, 10), "x2": f(0, 15)},
    },
    "hartmann6": {
        "title": "Hartmann-6 (6-D, optimum -3.32237)",
        "fn": hartmann6, "optimum": -3.32237,
        "space": {f"x{k}": f(0, 1) for k in range(6)},
    },
    "log_quadratic": {
        "title": "Log-scaled quadratic (3 log floats over 1e-5..1e2, optimum 0)",
        "fn": log_quadratic, "optimum": 0.0,
        "space": {"lr": f(1e-5, 1e2, True), "wd": f(1e-5, 1e2, True), "scale": f(1e-5, 1e2, True)},
    },
    "mixed": {
        "title": "Mixed (categorical optimizer x int layers x float dropout x log-float lr, optimum 0)",
        "fn": mixed, "optimum": 0.0,
        "space": {"optimizer": cat(["sgd", "momentum", "adam", "rmsprop"]), "layers": i(1, 10),
                  "dropout": f(0.0, 0.6), "lr": f(1e-5, 1.0, True)},
    },
}

# The ask-cost space: like hpo/benches/tpe_ask.rs (float, log float,
# stepped float, int, log int, 4-way categorical).
TIMING_SPACE = {
    "x": f(-5, 5), "lr": f(1e-5, 1.0, True), "frac": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.1},
    "depth": i(2, 12), "width": i(16, 1024, True), "kind": cat(["a", "b", "c", "d"]),
}


def timing_objective(p):
    return ((p["x"] - 1) ** 2 + (math.log10(p["lr"]) + 3) ** 2 + (p["frac"] - 0.3) ** 2
            + 0.1 * abs(p["depth"] - 6) + 0.01 * abs(math.log2(p["width"]) - 7)
            + {"a": 0.0, "b": 0.5, "c": 1.0, "d": 1.5}[p["kind"]])


def optuna_distributions(space):
    out = {}
    for name, s in space.items():
        if s["type"] == "float":
            out[name] = FloatDistribution(s["low"], s["high"], log=s.get("log", False), step=s.get("step"))
        elif s["type"] == "int":
            out[name] = IntDistribution(s["low"], s["high"], log=s.get("log", False), step=s.get("step", 1))
        else:
            out[name] = CategoricalDistribution(s["choices"])
    return out


def random_params(space, rng):
    out = {}
    for name, s in space.items():
        if s["type"] == "categorical":
            out[name] = rng.choice(s["choices"])
            continue
        lo, hi = s["low"], s["high"]
        if s.get("log"):
            x = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        else:
            x = rng.uniform(lo, hi)
        if s["type"] == "int":
            x = min(hi, max(lo, int(round(x))))
        elif s.get("step"):
            x = min(hi, lo + round((x - lo) / s["step"]) * s["step"])
        out[name] = x
    return out


# ---------------------------------------------------------------- samplers


def optuna_sampler(kind, seed):
    if kind == "optuna_tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if kind == "optuna_tpe_indep":
        return optuna.samplers.TPESampler(seed=seed, multivariate=False)
    if kind == "optuna_random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(kind)


SAMPLER_LABELS = {
    # Optuna 5's default TPESampler is multivariate for single-objective
    # studies; multivariate=False is the independent TPE (the 4.x default).
    "optuna_tpe": "Optuna TPESampler (defaults, multivariate)",
    "optuna_tpe_indep": "Optuna TPESampler (multivariate=False)",
    "optuna_random": "Optuna RandomSampler",
    "optuna_tpe_sqlite": "Optuna TPESampler (defaults) on RDBStorage (SQLite)",
    "tracseq_tpe": "TracSeq TPE (HTTP ask/tell, defaults)",
    "tracseq_random": "TracSeq random (HTTP ask/tell)",
}


def run_optuna(kind, problem, seed, trials):
    dists = optuna_distributions(problem["space"])
    study = optuna.create_study(direction="minimize", sampler=optuna_sampler(kind, seed))
    values = []
    for _ in range(trials):
        t = study.ask(dists)
        v = problem["fn"](t.params)
        study.tell(t, v)
        values.append(v)
    return values


def create_ask_tell(server, name, space, sampler):
    return server.post("/experiments", {
        "name": name, "direction": "minimize", "search_space": space, "sampler": sampler,
    })["id"]


def run_tracseq(server, name, problem, seed, trials):
    exp = create_ask_tell(server, name, problem["space"], {"type": "tpe", "seed": seed})
    values = []
    for _ in range(trials):
        t = server.post(f"/experiments/{exp}/ask")
        v = problem["fn"](t["params"])
        server.post(f"/experiments/{exp}/trials/{t['number']}/tell", {"value": v})
        values.append(v)
    return values


def best_after(values, checkpoints):
    out = []
    for c in checkpoints:
        out.append(min(values[:c]) if len(values) >= c else None)
    return out


# ---------------------------------------------------------------- ask cost


def time_optuna_asks(kind, n_told, asks, cap_s, seed=0):
    dists = optuna_distributions(TIMING_SPACE)
    storage, tmp = None, None
    if kind.endswith("_sqlite"):
        # Optuna's own durable storage (RDBStorage on SQLite), the
        # counterpart of our durable trial store; in-memory otherwise.
        import tempfile
        tmp = tempfile.mkdtemp(prefix="optuna-ask-")
        storage = f"sqlite:///{tmp}/study.db"
        kind = kind[: -len("_sqlite")]
    study = optuna.create_study(direction="minimize", sampler=optuna_sampler(kind, seed), storage=storage)
    rng = random.Random(seed)
    t0 = time.perf_counter()
    batch = []
    for _ in range(n_told):
        p = random_params(TIMING_SPACE, rng)
        batch.append(optuna.trial.create_trial(params=p, distributions=dists, value=timing_objective(p)))
    study.add_trials(batch)
    fill_s = time.perf_counter() - t0
    times = []
    start = time.perf_counter()
    for k in range(asks):
        a = time.perf_counter()
        t = study.ask(dists)
        times.append((time.perf_counter() - a) * 1000)
        study.tell(t, timing_objective(t.params))
        if time.perf_counter() - start > cap_s and k + 1 >= 3:
            break
    if tmp:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    return {"told": n_told, "asks": len(times), "median_ms": statistics.median(times),
            "min_ms": min(times), "max_ms": max(times), "fill_s": fill_s,
            "capped": len(times) < asks}


def time_tracseq_asks(server, n_told, asks, cap_s, seed=0, kind="tpe"):
    # kind "random": the same ask path with an O(1) sampler, so its time is
    # what storage and HTTP cost at this study size, apart from sampling.
    sampler = {"type": kind, "seed": seed}
    if kind == "tpe":
        sampler["n_startup_trials"] = n_told
    honest_fill = False
    try:
        exp = create_ask_tell(server, f"ask-time-{kind}-{n_told}", TIMING_SPACE, sampler)
    except ApiError as e:
        # The server does not take n_startup_trials this large: fill with TPE itself.
        log(f"n_startup_trials={n_told} refused ({e}); filling with TPE asks")
        honest_fill = True
        exp = create_ask_tell(server, f"ask-time-{kind}-{n_told}", TIMING_SPACE, {"type": "tpe", "seed": seed})
    t0 = time.perf_counter()
    for k in range(n_told):
        t = server.post(f"/experiments/{exp}/ask")
        server.post(f"/experiments/{exp}/trials/{t['number']}/tell", {"value": timing_objective(t["params"])})
        if k and k % 2000 == 0:
            log(f"  tracseq: {k}/{n_told} trials told ({time.perf_counter() - t0:.0f} s)")
    fill_s = time.perf_counter() - t0
    times, floor = [], []
    start = time.perf_counter()
    for k in range(asks):
        a = time.perf_counter()
        server.get("/health")
        floor.append((time.perf_counter() - a) * 1000)
        a = time.perf_counter()
        t = server.post(f"/experiments/{exp}/ask")
        times.append((time.perf_counter() - a) * 1000)
        server.post(f"/experiments/{exp}/trials/{t['number']}/tell", {"value": timing_objective(t["params"])})
        if time.perf_counter() - start > cap_s and k + 1 >= 3:
            break
    return {"told": n_told, "asks": len(times), "median_ms": statistics.median(times),
            "min_ms": min(times), "max_ms": max(times), "fill_s": fill_s,
            "http_floor_median_ms": statistics.median(floor), "honest_fill": honest_fill,
            "capped": len(times) < asks}


# ---------------------------------------------------------------- report


def fmt(x):
    if x is None:
        return "—"
    a = abs(x)
    if a == 0:
        return "0"
    if a >= 100:
        return f"{x:.1f}"
    if a >= 0.01:
        return f"{x:.4f}"
    return f"{x:.2e}"


def cell(q):
    if q is None:
        return "—"
    return f"{fmt(q['median'])} [{fmt(q['q1'])}, {fmt(q['q3'])}]"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--problems", default=",".join(PROBLEMS))
    ap.add_argument("--samplers", default="optuna_tpe,optuna_tpe_indep,optuna_random,tracseq_tpe")
    ap.add_argument("--ask-sizes", default="100,1000,10000",
                    help="told trials before the timed asks; empty to skip the ask timing")
    ap.add_argument("--asks", type=int, default=20, help="timed asks per size")
    ap.add_argument("--ask-cap", type=float, default=60.0,
                    help="seconds of timed asks per size and sampler (at least 3 asks)")
    ap.add_argument("--ask-samplers",
                    default="optuna_tpe,optuna_tpe_indep,optuna_tpe_sqlite,tracseq_tpe,tracseq_random")
    ap.add_argument("--results", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results.json"))
    args = ap.parse_args()

    checkpoints = [c for c in (25, 50, 100) if c <= args.trials]
    if args.trials not in checkpoints:
        checkpoints.append(args.trials)
    samplers = [s for s in args.samplers.split(",") if s]
    problems = [p for p in args.problems.split(",") if p]
    sizes = [int(s) for s in args.ask_sizes.split(",") if s]
    ask_samplers = [s for s in args.ask_samplers.split(",") if s]
    started = time.time()

    env = {"TRACSEQ_LIMITS_MAX_TRIALS": str(max([100_000] + [2 * s for s in sizes]))}
    server = Server(args.binary, env=env, args=["--workers", "1"])
    log(f"tracseq-ml {server.health} on port {server.port} ({args.binary})")
    results = {
        "meta": {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "commit": git_commit(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")),
            "machine": machine(), "python": platform.python_version(), "optuna": optuna.__version__,
            "binary": args.binary, "server_health": server.health,
            "seeds": args.seeds, "trials": args.trials, "checkpoints": checkpoints,
        },
        "quality": {}, "ask_time": {},
    }
    try:
        for pname in problems:
            problem = PROBLEMS[pname]
            res = {}
            for s in samplers:
                per_seed, wall = [], 0.0
                for seed in range(args.seeds):
                    t0 = time.perf_counter()
                    if s == "tracseq_tpe":
                        values = run_tracseq(server, f"{pname}-{seed}", problem, seed, args.trials)
                    else:
                        values = run_optuna(s, problem, seed, args.trials)
                    wall += time.perf_counter() - t0
                    per_seed.append(best_after(values, checkpoints))
                summary = {str(c): quantiles([b[k] for b in per_seed]) for k, c in enumerate(checkpoints)}
                res[s] = {"best_after": per_seed, "summary": summary, "wall_s": wall}
                log(f"{pname} {s}: median best@{checkpoints[-1]} = "
                    f"{fmt(summary[str(checkpoints[-1])]['median'])} ({wall:.1f} s for {args.seeds} seeds)")
            results["quality"][pname] = res
            save(args.results, results)

        for n in sizes:
            row = {}
            for s in ask_samplers:
                log(f"ask time at {n} told trials: {s}")
                if s in ("tracseq_tpe", "tracseq_random"):
                    row[s] = time_tracseq_asks(server, n, args.asks, args.ask_cap, kind=s.split("_")[1])
                else:
                    row[s] = time_optuna_asks(s, n, args.asks, args.ask_cap)
                log(f"  {s}: median {row[s]['median_ms']:.2f} ms over {row[s]['asks']} asks")
            results["ask_time"][str(n)] = row
            save(args.results, results)
    finally:
        server.close()
    results["meta"]["wall_s"] = time.time() - started
    save(args.results, results)
    report(results, samplers, ask_samplers)


def save(path, results):
    with open(path, "w") as fh:
        json.dump(results, fh, indent=1)
        fh.write("\n")


def report(results, samplers, ask_samplers):
    meta = results["meta"]
    cps = meta["checkpoints"]
    print(f"HPO quality: {meta['seeds']} seeds x {meta['trials']} trials per sampler and problem, "
          f"sequential ask/tell. Optuna {meta['optuna']} (Python {meta['python']}), "
          f"tracseq-ml {meta['server_health'].get('version', '?')} over HTTP. {meta['machine']}.")
    print("Cells: median [25th, 75th percentile] over seeds of the best value after N trials (lower is better).")
    print()
    for pname, res in results["quality"].items():
        print(f"### {PROBLEMS[pname]['title']}")
        print()
        print("| sampler | " + " | ".join(f"best after {c}" for c in cps) + " | wall s (all seeds) |")
        print("|---|" + "---:|" * len(cps) + "---:|")
        for s in samplers:
            if s in res:
                r = res[s]
                print(f"| {SAMPLER_LABELS[s]} | " + " | ".join(cell(r["summary"][str(c)]) for c in cps)
                      + f" | {r['wall_s']:.1f} |")
        ours = res.get("tracseq_tpe")
        if ours:
            print()
            for ref in ("optuna_tpe", "optuna_tpe_indep"):
                if ref in res:
                    parts = []
                    for k, c in enumerate(cps):
                        a = [b[k] for b in ours["best_after"]]
                        o = [b[k] for b in res[ref]["best_after"]]
                        better = sum(x < y for x, y in zip(a, o))
                        ties = sum(x == y for x, y in zip(a, o))
                        parts.append(f"{better}/{len(a)} better" + (f", {ties} tied" if ties else "") + f" at {c}")
                    print(f"TracSeq vs {SAMPLER_LABELS[ref]}, same seed numbers: " + "; ".join(parts) + ".  ")
        print()
    if results["ask_time"]:
        print("### ask cost (6-parameter mixed space)")
        print()
        cols = [s for s in ask_samplers]
        print("| told trials | " + " | ".join(f"{SAMPLER_LABELS[s]} ask ms" for s in cols)
              + " | HTTP floor (GET /health) ms | TracSeq / Optuna default |")
        print("|---:|" + "---:|" * len(cols) + "---:|---:|")
        for n, row in results["ask_time"].items():
            cells = []
            for s in cols:
                r = row.get(s)
                if r is None:
                    cells.append("—")
                else:
                    cells.append(f"{r['median_ms']:.2f} (n={r['asks']})" + (" capped" if r["capped"] else ""))
            floor = row.get("tracseq_tpe", {}).get("http_floor_median_ms")
            ratio = "—"
            if "tracseq_tpe" in row and "optuna_tpe" in row:
                ratio = f"{row['tracseq_tpe']['median_ms'] / row['optuna_tpe']['median_ms']:.3f}"
            print(f"| {int(n):,} | " + " | ".join(cells) + f" | {floor:.2f} | {ratio} |"
                  if floor is not None else f"| {int(n):,} | " + " | ".join(cells) + f" | — | {ratio} |")
        print()
        print("Median of the timed asks (n = how many; `capped` = stopped by the time cap). "
              "Optuna: `study.ask(distributions)` in-process, the N earlier trials added with "
              "`study.add_trials`, in memory or (RDBStorage) in a SQLite file; TracSeq: HTTP round trip of `POST /experiments/{id}/ask`, the N "
              "earlier trials asked and told with `n_startup_trials = N` (random), the timed ones TPE. "
              "TracSeq random: the same ask path with the random sampler (O(1) sampling), so its time is "
              "the storage (SQLite, durable) and HTTP share of an ask at that study size.")
        fills = []
        for n, row in results["ask_time"].items():
            if "tracseq_tpe" in row:
                fills.append(f"{int(n):,}: {row['tracseq_tpe']['fill_s']:.1f} s")
                if row["tracseq_tpe"].get("honest_fill"):
                    fills[-1] += " (TPE fill)"
        if fills:
            print("TracSeq time to ask and tell the N earlier trials over HTTP: " + ", ".join(fills) + ".")
    print()
    print(f"Total wall time {meta.get('wall_s', 0):.0f} s.")


if __name__ == "__main__":
    main()
