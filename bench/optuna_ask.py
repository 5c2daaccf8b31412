"""Optuna's TPE ask time on the space and history of hpo/benches/tpe_ask.rs.

One ask = `study.ask(distributions)` (Optuna samples every parameter inside
it: relative sampling for multivariate, then independent sampling for the
rest), timed after a history of N finished trials made like the Rust
benchmark's (random params; 1 in 20 failed, 1 in 10 pruned, every complete
and pruned trial with an intermediate value at step 3) and 4 trials running.
Each ask's trial is told FAIL so the history barely grows.

    python bench/optuna_ask.py [--sizes 100 1000 10000] [--asks 20]

Prints one line per (mode, size): median and min/max seconds per ask.
"""

import argparse
import math
import random
import statistics
import time

import optuna
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState, create_trial

SPACE = {
    "x": FloatDistribution(-5, 5),
    "lr": FloatDistribution(1e-5, 1.0, log=True),
    "dropout": FloatDistribution(0.0, 0.5, step=0.05),
    "iterations": IntDistribution(50, 1000, step=50),
    "units": IntDistribution(8, 1024, log=True),
    "family": CategoricalDistribution(["linear", "gbm", "nn", "svm"]),
}


def objective(p):
    family = 0.0 if p["family"] == "gbm" else 1.0
    return (
        (p["x"] - 1.0) ** 2
        + (math.log10(p["lr"]) + 2.0) ** 2
        + (p["dropout"] - 0.2) ** 2
        + ((p["iterations"] - 400.0) / 300.0) ** 2
        + (math.log2(p["units"]) - 6.0) ** 2 / 10.0
        + family
    )


def random_params(rng):
    return {
        "x": rng.uniform(-5, 5),
        "lr": math.exp(rng.uniform(math.log(1e-5), 0.0)),
        "dropout": round(rng.randint(0, 10) * 0.05, 10),
        "iterations": 50 * rng.randint(1, 20),
        "units": min(1024, max(8, round(math.exp(rng.uniform(math.log(7.5), math.log(1024.5)))))),
        "family": rng.choice(["linear", "gbm", "nn", "svm"]),
    }


def history(n, rng):
    trials = []
    for number in range(n):
        params = random_params(rng)
        value = objective(params)
        if number % 20 == 0:
            state, val, inter = TrialState.FAIL, None, {}
        elif number % 20 in (1, 11):
            state, val, inter = TrialState.PRUNED, None, {3: value + 1.0}
        else:
            state, val, inter = TrialState.COMPLETE, value, {3: value + 0.5}
        trials.append(
            create_trial(
                state=state,
                value=val,
                params=params,
                distributions=SPACE,
                intermediate_values=inter,
            )
        )
    return trials


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    ap.add_argument("--asks", type=int, default=20)
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"optuna {optuna.__version__}")
    for multivariate in (False, True):
        for n in args.sizes:
            rng = random.Random(7)
            sampler = optuna.samplers.TPESampler(
                seed=1, multivariate=multivariate, group=multivariate, constant_liar=True
            )
            study = optuna.create_study(sampler=sampler)
            study.add_trials(history(n, rng))
            for _ in range(4):
                study.ask(SPACE)  # running trials, as in the Rust benchmark
            times = []
            for _ in range(args.asks):
                t0 = time.perf_counter()
                trial = study.ask(SPACE)
                times.append(time.perf_counter() - t0)
                study.tell(trial, state=TrialState.FAIL)
            print(
                f"multivariate={multivariate} trials={n}: median {statistics.median(times) * 1e3:.2f} ms"
                f" (min {min(times) * 1e3:.2f}, max {max(times) * 1e3:.2f}) over {args.asks} asks"
            )


if __name__ == "__main__":
    main()
