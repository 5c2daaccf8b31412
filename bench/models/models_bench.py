"""Model quality and training time: each TracSeq model family against its
reference library at the same hyperparameters, on the same folds.

For each scikit-learn data set (breast_cancer: ROC AUC x 100; wine, digits:
accuracy %; diabetes: R^2 x 100) the script writes a CSV with a `__fold`
column (5 folds: StratifiedKFold for classification, KFold for regression,
shuffle, random_state=0), then computes every reference's CV score (mean over
the folds) and fit time (summed over the folds) on exactly those folds, with
the parameters in bench/models/params.json. With --ours it also runs
tracseq-learn's `family_bench` example on the same CSV for each family and
prints them side by side.
"""

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from tracseq_bench import git_commit, log, machine, load_sklearn as load  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

DATASETS = {
    "breast_cancer": {"task": "classification", "metric": "roc_auc", "label": "ROC AUC x 100"},
    "wine": {"task": "classification", "metric": "accuracy", "label": "accuracy %"},
    "digits": {"task": "classification", "metric": "accuracy", "label": "accuracy %"},
    "diabetes": {"task": "regression", "metric": "r2", "label": "R^2 x 100"},
}
FAMILIES = ["linear", "gbm", "random_forest", "xgboost", "lightgbm", "nn"]


def folds_for(name, x, y, n_folds=5):
    from sklearn.model_selection import KFold, StratifiedKFold
    if DATASETS[name]["task"] == "classification":
        split = StratifiedKFold(n_folds, shuffle=True, random_state=0).split(x, y)
    else:
        split = KFold(n_folds, shuffle=True, random_state=0).split(x)
    fold = np.zeros(len(y), dtype=int)
    for k, (_, valid) in enumerate(split):
        fold[valid] = k
    return fold


def write_csv(path, x, y, cols, fold, task):
    import pandas as pd
    df = pd.DataFrame(x, columns=cols)
    df["target"] = y.astype(int) if task == "classification" else y.astype(float)
    df["__fold"] = fold
    df.to_csv(path, index=False, float_format="%.17g")


def score(metric, y_true, pred):
    from sklearn.metrics import accuracy_score, r2_score, roc_auc_score
    if metric == "roc_auc":
        return 100.0 * roc_auc_score(y_true, pred[:, 1])
    if metric == "accuracy":
        return 100.0 * accuracy_score(y_true, np.argmax(pred, axis=1))
    return 100.0 * r2_score(y_true, pred)


# ---------------------------------------------------------------- references
# Each builder returns fit(x_train, y_train) -> predict(x) giving class
# probabilities (n x k) for classification or values (n) for regression.


def standardise(x_train):
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std < 1e-12] = 1.0
    return lambda x: (x - mean) / std


def ref_linear(cfg, task, threads, tracseq):
    from sklearn.linear_model import LogisticRegression, Ridge
    l2 = tracseq["linear_l2"]

    def fit(x, y):
        scale = standardise(x)
        xs = scale(x)
        if task == "classification":
            p = dict(cfg["classification"]["params"])
            p["C"] = 1.0 / (l2 * len(y))
            m = LogisticRegression(**p).fit(xs, y)
            return lambda z: m.predict_proba(scale(z))
        p = dict(cfg["regression"]["params"])
        p["alpha"] = l2 * len(y)
        m = Ridge(**p).fit(xs, y)
        return lambda z: m.predict(scale(z))
    return fit


def ref_sklearn_hgb(cfg, task, threads, tracseq):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    cls = HistGradientBoostingClassifier if task == "classification" else HistGradientBoostingRegressor
    return _sk(cls, cfg["params"], task)


def ref_sklearn_rf(cfg, task, threads, tracseq):
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    cls = RandomForestClassifier if task == "classification" else RandomForestRegressor
    return _sk(cls, {**cfg["params"], "n_jobs": threads, "random_state": 0}, task)


def _sk(cls, params, task):
    def fit(x, y):
        m = cls(**params).fit(x, y)
        return m.predict_proba if task == "classification" else m.predict
    return fit


def ref_xgboost(cfg, task, threads, tracseq):
    import xgboost as xgb
    cls = xgb.XGBClassifier if task == "classification" else xgb.XGBRegressor
    return _sk(cls, {**cfg["params"], "n_jobs": threads, "random_state": 0}, task)


def ref_lightgbm(cfg, task, threads, tracseq):
    import lightgbm as lgb
    cls = lgb.LGBMClassifier if task == "classification" else lgb.LGBMRegressor
    return _sk(cls, {**cfg["params"], "n_jobs": threads, "random_state": 0}, task)


def ref_torch_mlp(cfg, task, threads, tracseq, seed=0):
    import torch
    from torch import nn
    p = cfg["params"]
    torch.set_num_threads(threads)

    def fit(x, y):
        from sklearn.model_selection import StratifiedKFold, KFold
        torch.manual_seed(seed)
        scale = standardise(x)
        xs = scale(x).astype(np.float32)
        n_classes = int(y.max()) + 1 if task == "classification" else 0
        k_valid = int(round(1 / p["validation_fraction"]))
        if task == "classification":
            _, valid = next(StratifiedKFold(k_valid, shuffle=True, random_state=seed).split(xs, y))
        else:
            _, valid = next(KFold(k_valid, shuffle=True, random_state=seed).split(xs))
        mask = np.zeros(len(y), dtype=bool)
        mask[valid] = True
        xt, yt, xv, yv = xs[~mask], y[~mask], xs[mask], y[mask]
        if task == "regression":
            mean, std = yt.mean(), yt.std() or 1.0
            target = torch.tensor((yt - mean) / std, dtype=torch.float32).unsqueeze(1)
            loss_fn = nn.MSELoss()
            outputs = 1
        elif n_classes == 2:
            target = torch.tensor(yt, dtype=torch.float32).unsqueeze(1)
            loss_fn = nn.BCEWithLogitsLoss()
            outputs = 1
        else:
            target = torch.tensor(yt, dtype=torch.long)
            loss_fn = nn.CrossEntropyLoss()
            outputs = n_classes
        layers, inputs = [], xs.shape[1]
        for _ in range(p["hidden_layers"]):
            layers += [nn.Linear(inputs, p["width"])]
            if p["batch_norm"]:
                layers.append(nn.BatchNorm1d(p["width"]))
            layers.append(nn.ReLU())
            if p["dropout"] > 0:
                layers.append(nn.Dropout(p["dropout"]))
            inputs = p["width"]
        layers.append(nn.Linear(inputs, outputs))
        net = nn.Sequential(*layers)
        opt = torch.optim.AdamW(net.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
        xt_t, xv_t = torch.tensor(xt), torch.tensor(xv)

        def predict_raw(xx):
            net.eval()
            with torch.no_grad():
                out = net(xx)
            if task == "regression":
                return out.squeeze(1).double().numpy() * std + mean
            if n_classes == 2:
                pr = torch.sigmoid(out.squeeze(1)).double().numpy()
                return np.stack([1 - pr, pr], axis=1)
            return torch.softmax(out, dim=1).double().numpy()

        metric = "r2" if task == "regression" else ("roc_auc" if n_classes == 2 else "accuracy")
        best, best_state, since = -math.inf, None, 0
        gen = torch.Generator().manual_seed(seed)
        for _epoch in range(p["max_epochs"]):
            net.train()
            perm = torch.randperm(len(xt_t), generator=gen)
            for start in range(0, len(perm), p["batch_size"]):
                idx = perm[start:start + p["batch_size"]]
                if len(idx) < 2:
                    continue
                opt.zero_grad()
                loss = loss_fn(net(xt_t[idx]), target[idx])
                loss.backward()
                opt.step()
            try:
                value = score(metric, yv, predict_raw(xv_t))
            except ValueError:
                value = -math.inf
            if value > best + 1e-4 * max(abs(best), 1e-12) or best_state is None:
                best, since = value, 0
                best_state = {k: v.clone() for k, v in net.state_dict().items()}
            else:
                since += 1
                if since >= p["patience"]:
                    break
        net.load_state_dict(best_state)
        return lambda z: predict_raw(torch.tensor(scale(z).astype(np.float32)))
    return fit


BUILDERS = {
    "scikit-learn LogisticRegression / Ridge": ref_linear,
    "scikit-learn HistGradientBoosting": ref_sklearn_hgb,
    "XGBoost (hist, same settings)": ref_xgboost,
    "LightGBM boosting=rf": ref_lightgbm,
    "scikit-learn RandomForest": ref_sklearn_rf,
    "XGBoost": ref_xgboost,
    "LightGBM": ref_lightgbm,
    "PyTorch MLP": ref_torch_mlp,
}


def cv_reference(builder, ref, family_cfg, name, x, y, fold, threads):
    task, metric = DATASETS[name]["task"], DATASETS[name]["metric"]
    fit = builder(ref, task, threads, family_cfg["tracseq"])
    scores, seconds = [], 0.0
    for k in sorted(set(fold.tolist())):
        tr, va = fold != k, fold == k
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            predict = fit(x[tr], y[tr])
        seconds += time.perf_counter() - t0
        scores.append(score(metric, y[va], predict(x[va])))
    return {"score": float(np.mean(scores)), "fold_scores": [float(s) for s in scores],
            "train_seconds": seconds}


def run_ours(cmd, csv, name, family, tracseq_params, timeout):
    args = cmd + ["--csv", csv, "--target", "target", "--task", DATASETS[name]["task"],
                  "--family", family, "--params", json.dumps(tracseq_params)]
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    lines = [ln for ln in out.stdout.splitlines() if ln.strip().startswith("{")]
    if out.returncode != 0 or not lines:
        err = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {out.returncode}: {err[:300]}"}
    return json.loads(lines[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--params", default=os.path.join(HERE, "params.json"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ours", action="store_true", help="also run TracSeq's family_bench example")
    ap.add_argument("--ours-cmd", default="",
                    help="command prefix for our side (default: $FAMILY_BENCH, the built example)")
    ap.add_argument("--ours-timeout", type=int, default=1800)
    ap.add_argument("--csv-dir", default="", help="keep the CSVs here (default: a temp dir)")
    ap.add_argument("--results", default=os.path.join(HERE, "results.json"))
    args = ap.parse_args()

    params = json.load(open(args.params))["families"]
    families = [f for f in args.families.split(",") if f]
    names = [d for d in args.datasets.split(",") if d]
    ours_cmd = None
    if args.ours:
        ours_cmd = (args.ours_cmd or os.environ.get("FAMILY_BENCH", "")).split()
        if not ours_cmd:
            sys.exit("--ours needs --ours-cmd or $FAMILY_BENCH")
    csv_dir = args.csv_dir or tempfile.mkdtemp(prefix="tracseq-models-")
    os.makedirs(csv_dir, exist_ok=True)

    import lightgbm
    import sklearn
    import xgboost
    versions = {"python": platform.python_version(), "scikit-learn": sklearn.__version__,
                "lightgbm": lightgbm.__version__, "xgboost": xgboost.__version__}
    if "nn" in families:
        try:
            import torch
            versions["torch"] = torch.__version__
        except ImportError as e:
            log(f"torch unavailable ({e}); skipping the nn references")
            families = [f for f in families if f != "nn"] if not args.ours else families
    results = {"meta": {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                        "commit": git_commit(os.path.join(HERE, "..", "..")), "machine": machine(),
                        "threads": args.threads, "versions": versions, "ours": bool(args.ours),
                        "ours_cmd": ours_cmd, "csv_dir": csv_dir},
               "datasets": {}}
    started = time.time()
    for name in names:
        x, y, cols = load(name)
        fold = folds_for(name, x, y)
        csv = os.path.join(csv_dir, f"{name}.csv")
        write_csv(csv, x, y, cols, fold, DATASETS[name]["task"])
        ds = {"rows": len(y), "features": x.shape[1], "csv": csv, "families": {}}
        for fam in families:
            cfg = params[fam]
            entry = {"tracseq_params": cfg["tracseq"], "references": {}}
            for ref in cfg["references"]:
                if fam == "nn" and "torch" not in versions:
                    continue
                builder = BUILDERS[ref["name"]]
                t0 = time.time()
                entry["references"][ref["name"]] = r = cv_reference(builder, ref, cfg, name, x, y, fold, args.threads)
                log(f"{name} {fam} {ref['name']}: {r['score']:.2f} ({r['train_seconds']:.2f} s fit, "
                    f"{time.time() - t0:.1f} s all)")
            if ours_cmd:
                entry["tracseq"] = r = run_ours(ours_cmd, csv, name, fam, cfg["tracseq"], args.ours_timeout)
                log(f"{name} {fam} TracSeq: {r}")
            ds["families"][fam] = entry
        results["datasets"][name] = ds
        with open(args.results, "w") as fh:
            json.dump(results, fh, indent=1)
    results["meta"]["wall_s"] = time.time() - started
    with open(args.results, "w") as fh:
        json.dump(results, fh, indent=1)
        fh.write("\n")
    report(results)


def report(results):
    meta = results["meta"]
    v = meta["versions"]
    print(f"Model quality: 5-fold CV on the same folds, mean score over folds; train s = fit time summed "
          f"over the 5 folds. {meta['machine']}; {meta['threads']} thread(s) per library. "
          + ", ".join(f"{k} {val}" for k, val in v.items()) + ".")
    print()
    for name, ds in results["datasets"].items():
        print(f"### {name} ({ds['rows']} rows, {ds['features']} features; {DATASETS[name]['label']})")
        print()
        print("| family | reference | TracSeq score | reference score | diff | TracSeq train s | reference train s |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for fam, entry in ds["families"].items():
            ours = entry.get("tracseq")
            for ref, r in entry["references"].items():
                if ours is None:
                    o_score = o_time = diff = "—"
                elif "error" in ours:
                    o_score, o_time, diff = "error", "—", "—"
                else:
                    o_score = f"{ours['score']:.2f}"
                    o_time = f"{ours['train_seconds']:.2f}"
                    diff = f"{ours['score'] - r['score']:+.2f}"
                print(f"| {fam} | {ref} | {o_score} | {r['score']:.2f} | {diff} | {o_time} | {r['train_seconds']:.2f} |")
            if not entry["references"] and ours is not None:
                o = f"{ours['score']:.2f}" if "score" in ours else "error"
                print(f"| {fam} | — | {o} | — | — | {ours.get('train_seconds', '—')} | — |")
        print()
        errors = [(fam, e["tracseq"]["error"]) for fam, e in ds["families"].items()
                  if "error" in (e.get("tracseq") or {})]
        for fam, err in errors:
            print(f"TracSeq {fam} on {name}: {err}  ")
        if errors:
            print()
    print(f"Total wall time {meta.get('wall_s', 0):.0f} s.")


if __name__ == "__main__":
    main()
