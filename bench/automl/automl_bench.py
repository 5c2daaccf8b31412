"""AutoML at an equal time budget: FLAML's AutoML against a TracSeq ML AutoML
experiment through the HTTP API, on scikit-learn's breast_cancer (ROC AUC),
wine and digits (accuracy) and diabetes (R^2).

Each data set is split once into 80% training rows and a 20% holdout
(stratified for classification, random_state=0) that neither side sees while
searching. FLAML: `AutoML().fit(X, y, task=..., metric=..., time_budget=T,
eval_method="cv", n_splits=5, seed=0)` (its default estimators; n_jobs=-1, so
both cores). TracSeq: the training rows uploaded as a CSV (`POST /datasets`),
`POST /experiments` with `dataset_id`, `target`, the matching metric,
`budget.seconds = T`, `cv_folds = 5`, `parallelism = 2` (the two workers of
`tracseq-ml up`), `seed = 0` and its default search space; the experiment is
polled until it has registered its model. Both then predict the holdout
(FLAML: `predict_proba` / `predict`; TracSeq: `POST /batch_predict` with the
holdout records) and are scored there. The tables give each side's best CV
score from its own search, the holdout score, the trials it ran and the wall
time it took (TracSeq's budget stops new trials; the trials still running
finish and the final model is trained after it, so its wall time can exceed T;
FLAML's includes its retraining of the best model).
"""

import argparse
import json
import os
import platform
import re
import sys
import time
import warnings
from collections import Counter


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from tracseq_bench import ApiError, Server, git_commit, log, machine, load_sklearn as load  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# data set -> (task, FLAML metric, TracSeq metric, label)
DATASETS = {
    "breast_cancer": ("classification", "roc_auc", "auc", "ROC AUC x 100"),
    "wine": ("classification", "accuracy", "accuracy", "accuracy %"),
    "digits": ("classification", "accuracy", "accuracy", "accuracy %"),
    "diabetes": ("regression", "r2", "r2", "R^2 x 100"),
}


def holdout_score(metric, y_true, proba=None, pred=None):
    from sklearn.metrics import accuracy_score, r2_score, roc_auc_score
    if metric == "roc_auc":
        return 100.0 * roc_auc_score(y_true, proba)
    if metric == "accuracy":
        return 100.0 * accuracy_score(y_true, pred)
    return 100.0 * r2_score(y_true, pred)


def run_flaml(name, x_train, y_train, x_test, y_test, cols, budget, seed):
    import pandas as pd
    from flaml import AutoML
    task, metric, _, _ = DATASETS[name]
    automl = AutoML()
    xt = pd.DataFrame(x_train, columns=cols)
    t0 = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        automl.fit(xt, y_train, task=task, metric=metric, time_budget=budget, eval_method="cv",
                   n_splits=5, seed=seed, verbose=0, log_file_name="")
    wall = time.time() - t0
    xs = pd.DataFrame(x_test, columns=cols)
    if metric == "roc_auc":
        test = holdout_score(metric, y_test, proba=automl.predict_proba(xs)[:, 1])
    else:
        test = holdout_score(metric, y_test, pred=automl.predict(xs))
    # config_history keeps only the improvements; _iter_per_learner counts every trial.
    per_learner = {k: int(n) for k, n in getattr(automl, "_iter_per_learner", {}).items() if n}
    return {"cv": 100.0 * (1.0 - automl.best_loss), "test": test, "wall_s": wall,
            "trials": sum(per_learner.values()) or len(automl.config_history),
            "families": per_learner, "best": automl.best_estimator,
            "best_config": {k: (v if isinstance(v, (int, float, str, bool)) else str(v))
                            for k, v in (automl.best_config or {}).items()}}


def csv_bytes(x, y, cols, task):
    import io
    import pandas as pd
    df = pd.DataFrame(x, columns=cols)
    df["target"] = y.astype(int) if task == "classification" else y.astype(float)
    buf = io.StringIO()
    df.to_csv(buf, index=False, float_format="%.17g")
    return buf.getvalue().encode()


def run_tracseq(server, name, x_train, y_train, x_test, y_test, cols, budget, seed, wait_extra):
    task, metric, our_metric, _ = DATASETS[name]
    ds = server.post(f"/datasets?name=bench-{name}", csv_bytes(x_train, y_train, cols, task),
                     content_type="text/csv")
    model = f"automl-{name}"
    t0 = time.time()
    exp = server.post("/experiments", {
        "name": model, "dataset_id": ds["id"], "target": "target", "metric": our_metric,
        "budget": {"seconds": budget}, "parallelism": 2, "cv_folds": 5, "seed": seed,
        "model_name": model,
    })
    eid = exp["id"]
    deadline = t0 + budget + wait_extra
    state = exp.get("state")
    while True:
        brief = next((e for e in server.get("/experiments") if e["id"] == eid), None)
        state = brief["state"] if brief else state
        if state in ("completed", "failed", "cancelled"):
            break
        if time.time() > deadline:
            log(f"{name}: experiment still {state} {wait_extra} s after the budget; cancelling")
            server.post(f"/experiments/{eid}/cancel")
            state = "timed out"
            break
        time.sleep(1.0)
    wall = time.time() - t0
    full = server.get(f"/experiments/{eid}")
    out = {"state": state, "wall_s": wall, "counts": full.get("counts"), "error": full.get("error"),
           "experiment_id": eid}
    best = full.get("best_trial")
    if best:
        out["cv"] = 100.0 * best["value"]
        out["best"] = best["params"].get("family", "?")
        out["best_params"] = best["params"]
    trials = server.get(f"/experiments/{eid}/trials?fields=number,value,params&state=complete")
    out["families"] = dict(Counter((t.get("params") or {}).get("family", "?") for t in trials))
    failed = server.get(f"/experiments/{eid}/trials?fields=number,params,detail&state=failed")
    # Grouped by family and message with its numbers masked.
    reasons = Counter(f"{(t.get('params') or {}).get('family', '?')}: "
                      + re.sub(r"-?\d+(\.\d+)?(e-?\d+)?", "#", json.dumps(t.get("detail")))[:200]
                      for t in failed)
    out["failures"] = [{"reason": r, "trials": n} for r, n in reasons.most_common()]
    if state != "completed" or full.get("model_version") is None:
        return out
    records = [{c: float(v) for c, v in zip(cols, row)} for row in x_test]
    preds = server.post("/batch_predict", {"model": model, "records": records})["predictions"]
    if metric == "roc_auc":
        out["test"] = holdout_score(metric, y_test, proba=[p["probabilities"]["1"] for p in preds])
    elif task == "classification":
        out["test"] = holdout_score(metric, y_test, pred=[int(p["label"]) for p in preds])
    else:
        out["test"] = holdout_score(metric, y_test, pred=[p["value"] for p in preds])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--budget", type=int, default=60, help="seconds per data set and side")
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sides", default="flaml,tracseq")
    ap.add_argument("--wait-extra", type=int, default=600,
                    help="seconds after the budget to wait for TracSeq's final model before cancelling")
    ap.add_argument("--results", default=os.path.join(HERE, "results.json"))
    args = ap.parse_args()

    from sklearn.model_selection import train_test_split
    import flaml
    import sklearn
    sides = args.sides.split(",")
    results = {"meta": {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                        "commit": git_commit(os.path.join(HERE, "..", "..")), "machine": machine(),
                        "budget_s": args.budget, "seed": args.seed, "binary": args.binary,
                        "versions": {"python": platform.python_version(), "flaml": flaml.__version__,
                                     "scikit-learn": sklearn.__version__}},
               "datasets": {}}
    started = time.time()
    server = Server(args.binary) if "tracseq" in sides else None
    if server:
        results["meta"]["server_health"] = server.health
        log(f"tracseq-ml {server.health} on port {server.port}")
    try:
        for name in [d for d in args.datasets.split(",") if d]:
            task = DATASETS[name][0]
            x, y, cols = load(name)
            x_train, x_test, y_train, y_test = train_test_split(
                x, y, test_size=0.2, random_state=0, stratify=y if task == "classification" else None)
            entry = {"train_rows": len(y_train), "test_rows": len(y_test)}
            if "flaml" in sides:
                log(f"{name}: FLAML, {args.budget} s")
                entry["flaml"] = run_flaml(name, x_train, y_train, x_test, y_test, cols, args.budget, args.seed)
                log(f"  {entry['flaml']}")
            if server:
                log(f"{name}: TracSeq, {args.budget} s")
                try:
                    entry["tracseq"] = run_tracseq(server, name, x_train, y_train, x_test, y_test, cols,
                                                   args.budget, args.seed, args.wait_extra)
                except ApiError as e:
                    entry["tracseq"] = {"state": "error", "error": str(e)}
                log(f"  {entry['tracseq']}")
            results["datasets"][name] = entry
            save(args.results, results)
    finally:
        if server:
            server.close()
    results["meta"]["wall_s"] = time.time() - started
    save(args.results, results)
    report(results)


def save(path, results):
    with open(path, "w") as fh:
        json.dump(results, fh, indent=1)
        fh.write("\n")


def report(results):
    meta = results["meta"]
    v = meta["versions"]
    health = meta.get("server_health") or {}
    print(f"AutoML at {meta['budget_s']} s per data set and side, seed {meta['seed']}: FLAML {v['flaml']} "
          f"against tracseq-ml {health.get('version', '?')} (HTTP API). {meta['machine']}.")
    print("CV = the search's best 5-fold CV score on the 80% training rows; holdout = the final model "
          "on the 20% neither side saw.")
    print()
    print("| data set (metric) | FLAML CV | TracSeq CV | FLAML holdout | TracSeq holdout | holdout diff "
          "| FLAML trials | TracSeq trials (complete/pruned/failed) | FLAML best | TracSeq best | FLAML wall s | TracSeq wall s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|")

    def num(d, k):
        return f"{d[k]:.2f}" if d and k in d else "—"
    for name, e in results["datasets"].items():
        f, o = e.get("flaml"), e.get("tracseq")
        diff = f"{o['test'] - f['test']:+.2f}" if f and o and "test" in o and "test" in f else "—"
        counts = o.get("counts") if o else None
        trials = f"{counts['total']} ({counts['complete']}/{counts['pruned']}/{counts['failed']})" if counts else "—"
        print(f"| {name} ({DATASETS[name][3]}) | {num(f, 'cv')} | {num(o, 'cv')} | {num(f, 'test')} | "
              f"{num(o, 'test')} | {diff} | {f['trials'] if f else '—'} | {trials} | "
              f"{f['best'] if f else '—'} | {o.get('best', '—') if o else '—'} | "
              f"{num(f, 'wall_s')} | {num(o, 'wall_s')} |")
    print()
    for name, e in results["datasets"].items():
        o = e.get("tracseq")
        if o and o.get("state") != "completed":
            print(f"TracSeq on {name}: {o.get('state')}: {o.get('error')}  ")
        for fail in (o or {}).get("failures", [])[:3]:
            print(f"TracSeq failed trials on {name}: {fail['trials']} x {fail['reason']}  ")
        for side, label in (("flaml", "FLAML trials"), ("tracseq", "TracSeq complete trials")):
            d = e.get(side)
            if d and d.get("families"):
                fams = ", ".join(f"{k} {n}" for k, n in sorted(d["families"].items()))
                print(f"{label} by estimator/family on {name}: {fams}.  ")
    print()
    print(f"Total wall time {meta.get('wall_s', 0):.0f} s.")


if __name__ == "__main__":
    main()
