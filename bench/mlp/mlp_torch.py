"""The MLP training loop of tracseq-learn's nn family, written in plain
PyTorch: the baseline for ml/examples/mlp_bench.rs. Same flags, same JSON.

Same network (Linear -> BatchNorm1d -> ReLU -> Dropout per hidden layer,
then Linear), same initialisation bounds (PyTorch's defaults), AdamW with
lr 1e-3 and weight decay 1e-4 (PyTorch's default implementation choice for
the device), MSE on the standardised target, shuffled mini-batches taken by
index from tensors already on the device, one-row batches skipped, a fifth
of the rows validated (eval mode, no grad) after each epoch. Throughput
counts training rows only; the first epoch is left out of the median.
"""

import argparse
import json
import math
import statistics
import time

import torch
from torch import nn


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--features", type=int, default=32)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    device = torch.device(a.device)

    x = torch.rand(a.rows, a.features, dtype=torch.float64) * 2 - 1
    k = torch.tensor([(j % 5) + 1 for j in range(a.features)], dtype=torch.float64)
    y = torch.sin(x * k).sum(1) + 0.1 * (torch.rand(a.rows, dtype=torch.float64) * 2 - 1)
    perm = torch.randperm(a.rows)
    n_valid = a.rows // 5
    valid, train = perm[:n_valid], perm[n_valid:]
    mean, std = y[train].mean(), y[train].std(unbiased=False)
    x_train = x[train].float().to(device)
    y_train = ((y[train] - mean) / std).float().unsqueeze(1).to(device)
    x_valid = x[valid].float().to(device)
    y_valid = y[valid]

    layers = []
    inputs = a.features
    for _ in range(a.layers):
        layers += [nn.Linear(inputs, a.width), nn.BatchNorm1d(a.width), nn.ReLU()]
        if a.dropout > 0:
            layers.append(nn.Dropout(a.dropout))
        inputs = a.width
    layers.append(nn.Linear(inputs, 1))
    model = nn.Sequential(*layers).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    loss_fn = nn.MSELoss()

    n = x_train.shape[0]
    epoch_seconds, rmse = [], []
    for _ in range(a.epochs):
        model.train()
        start = time.perf_counter()
        order = torch.randperm(n, device=device)
        for i in range(0, n, a.batch):
            idx = order[i : i + a.batch]
            if idx.numel() < 2:
                continue
            out = model(x_train.index_select(0, idx))
            loss = loss_fn(out, y_train.index_select(0, idx))
            opt.zero_grad()
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        epoch_seconds.append(time.perf_counter() - start)
        model.eval()
        with torch.no_grad():
            pred = model(x_valid).squeeze(1).double().cpu() * std + mean
        rmse.append(math.sqrt(((pred - y_valid) ** 2).mean().item()))

    rates = [n / s for s in epoch_seconds]
    steady = rates[1:] or rates
    print(json.dumps({
        "impl": "pytorch",
        "torch": torch.__version__,
        "device": str(device),
        "rows": a.rows,
        "train_rows": n,
        "epochs": a.epochs,
        "batch": a.batch,
        "width": a.width,
        "layers": a.layers,
        "features": a.features,
        "dropout": a.dropout,
        "threads": a.threads,
        "epoch_rows_per_second": rates,
        "median_rows_per_second": statistics.median(steady),
        "train_seconds": sum(epoch_seconds),
        "final_validation_rmse": rmse[-1],
    }))


if __name__ == "__main__":
    main()
