"""Celery baseline for the dispatch benchmark: the same no-op workload as
`bench/src/bin/dispatch.rs`, through Celery with RabbitMQ as broker and Redis
as result backend.

    python bench/celery_noop.py --jobs 2000 --workers 2

starts a worker subprocess (`celery -A celery_noop worker`) on a fresh queue,
submits one warm-up task, then times from before the first submit until every
result is back, then measures the per-task latency at low load (one task in
flight at a time), stops the worker, deletes the queue and the results, and
prints one JSON line like the Rust binary's.

Broker and backend come from CELERY_NOOP_BROKER (default
amqp://guest:guest@127.0.0.1:5672//) and CELERY_NOOP_BACKEND (default
redis://127.0.0.1:6379/15); the queue from CELERY_NOOP_QUEUE (set by the
driver for its worker).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid

from celery import Celery
from celery.result import ResultSet

BROKER = os.environ.get("CELERY_NOOP_BROKER", "amqp://guest:guest@127.0.0.1:5672//")
BACKEND = os.environ.get("CELERY_NOOP_BACKEND", "redis://127.0.0.1:6379/15")
QUEUE = os.environ.get("CELERY_NOOP_QUEUE", "bench-noop")

app = Celery("celery_noop", broker=BROKER, backend=BACKEND)
app.conf.update(
    task_default_queue=QUEUE,
    result_expires=600,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="noop")
def noop():
    return {"noop": True}


def start_worker(queue, workers, pool):
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, CELERY_NOOP_QUEUE=queue)
    cmd = [
        os.path.join(os.path.dirname(sys.executable), "celery"),
        "-A", "celery_noop", "worker",
        "--concurrency", str(workers),
        "--pool", pool,
        "-Q", queue,
        "-n", f"{queue}@%h",
        "--loglevel", "WARNING",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]
    # The banner goes to stdout; keep ours to the one JSON line.
    return subprocess.Popen(
        cmd, cwd=here, env=env, start_new_session=True, stdout=subprocess.DEVNULL
    )


def stop_worker(proc):
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # the worker's own session (start_new_session)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2, help="worker --concurrency")
    ap.add_argument("--pool", default="prefork", choices=["prefork", "threads", "solo"])
    ap.add_argument("--latency-jobs", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args()

    queue = f"bench-noop-{uuid.uuid4().hex}"
    task = noop.s().set(queue=queue)
    proc = start_worker(queue, args.workers, args.pool)
    kept = []
    try:
        # Warm-up: the worker is up and consuming when this returns.
        warm = task.apply_async()
        kept.append(warm)
        if warm.get(timeout=60) != {"noop": True}:
            raise SystemExit("unexpected warm-up result")

        start = time.perf_counter()
        results = [task.apply_async() for _ in range(args.jobs)]
        rs = ResultSet(results)
        values = rs.get(timeout=args.timeout)
        seconds = time.perf_counter() - start
        kept.extend(results)
        if len(values) != args.jobs or any(v != {"noop": True} for v in values):
            raise SystemExit("unexpected results")

        latency = None
        if args.latency_jobs > 0:
            samples = []
            for _ in range(args.latency_jobs):
                t0 = time.perf_counter()
                r = task.apply_async()
                r.get(timeout=10, interval=0.001)
                samples.append((time.perf_counter() - t0) * 1e3)
                kept.append(r)
            samples.sort()
            pct = lambda q: samples[round((len(samples) - 1) * q)]  # noqa: E731
            latency = {
                "jobs": args.latency_jobs,
                "median_ms": round(pct(0.5), 3),
                "p90_ms": round(pct(0.9), 3),
                "max_ms": round(samples[-1], 3),
                "mean_ms": round(sum(samples) / len(samples), 3),
                "overhead_pct_of_1s_trial": round(pct(0.5) / 1000 * 100, 3),
            }
    finally:
        stop_worker(proc)
        for r in kept:
            try:
                r.forget()
            except Exception:  # noqa: BLE001 - best-effort cleanup
                pass
        try:
            with app.connection_for_write() as conn:
                conn.default_channel.queue_delete(queue)
                conn.default_channel.exchange_delete(queue)
        except Exception as e:  # noqa: BLE001
            print(f"celery_noop: could not delete queue {queue}: {e}", file=sys.stderr)

    line = {
        "mode": "celery",
        "jobs": args.jobs,
        "workers": args.workers,
        "pool": args.pool,
        "seconds": round(seconds, 4),
        "jobs_per_sec": round(args.jobs / seconds, 1),
    }
    if latency:
        line["latency"] = latency
    print(json.dumps(line, separators=(",", ":")))


if __name__ == "__main__":
    main()
