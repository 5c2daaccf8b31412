"""Shared helpers for the Python benchmark harnesses (bench/hpo, bench/models, bench/automl).

`Server` starts `tracseq-ml up` on a free port with a fresh data directory
(or a given one, kept), waits for `/health`, and speaks JSON to it over one
keep-alive HTTP/1.1 connection (`http.client`, so the client adds as little
as possible to the round trips the harnesses time), as the admin token the
first start wrote. Stopping sends SIGTERM and waits.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


def log(*args):
    print("[bench]", *args, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ApiError(RuntimeError):
    def __init__(self, status, body, method, path):
        super().__init__(f"{method} {path} -> HTTP {status}: {body}")
        self.status = status
        self.body = body


class Server:
    def __init__(self, binary, env=None, args=(), startup_timeout=120, data_dir=None):
        self.binary = binary
        self.port = free_port()
        self.keep_data = data_dir is not None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="tracseq-bench-")
        self.token = None
        self.log_path = os.path.join(self.data_dir, f"server-{self.port}.log")
        full_env = dict(os.environ)
        full_env.setdefault("RUST_LOG", "warn")
        full_env.update(env or {})
        cmd = [binary, "up", "--port", str(self.port), "--data-dir", self.data_dir, *args]
        self._log = open(self.log_path, "wb")
        # cwd = the data dir, so no tracseq.toml of the caller's directory is read.
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=full_env, cwd=self.data_dir)
        self.conn = None
        deadline = time.time() + startup_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tracseq-ml exited with {self.proc.returncode}; "
                                   f"log:\n{self.tail_log()}")
            try:
                self.health = self.get("/health")
                with open(os.path.join(self.data_dir, "admin.token")) as f:
                    self.token = f.read().strip()
                break
            except (OSError, http.client.HTTPException, ApiError):
                self.conn = None
                if time.time() > deadline:
                    self.close()
                    raise RuntimeError("tracseq-ml did not answer /health in time")
                time.sleep(0.2)

    def tail_log(self, n=4000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def _connection(self):
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        return self.conn

    def request(self, method, path, body=None, content_type="application/json", raw=False):
        """Returns the decoded JSON body (the bytes with `raw`); raises
        ApiError on a non-2xx status."""
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        if body is not None:
            if not isinstance(body, (bytes, str)):
                body = json.dumps(body)
            if isinstance(body, str):
                body = body.encode()
            headers["content-type"] = content_type
        for attempt in range(2):
            conn = self._connection()
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A keep-alive connection closed by the server: reconnect once.
                self.conn = None
                if attempt:
                    raise
        if not 200 <= resp.status < 300:
            raise ApiError(resp.status, data.decode("utf-8", "replace"), method, path)
        if raw:
            return data
        text = data.decode("utf-8", "replace")
        return json.loads(text) if text else None

    def get(self, path):
        return self.request("GET", path)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body if body is not None else b"", **kw)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=70)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        if not self.keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def quantiles(values):
    """median, q1, q3, min, max (linear interpolation, like numpy's default)."""
    v = sorted(values)
    if not v:
        return None

    def q(p):
        k = (len(v) - 1) * p
        lo = int(k)
        hi = min(lo + 1, len(v) - 1)
        return v[lo] + (v[hi] - v[lo]) * (k - lo)

    return {"median": q(0.5), "q1": q(0.25), "q3": q(0.75), "min": v[0], "max": v[-1], "n": len(v)}


def git_commit(root):
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return head + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"nproc = {os.cpu_count()}, {cpu}"


def load_sklearn(name):
    """One of scikit-learn's bundled data sets (breast_cancer, wine, digits,
    diabetes) as (x float64, y, column names made CSV- and API-safe)."""
    import re

    import numpy as np
    from sklearn import datasets
    loader = {"breast_cancer": datasets.load_breast_cancer, "wine": datasets.load_wine,
              "digits": datasets.load_digits, "diabetes": datasets.load_diabetes}[name]
    d = loader()
    cols = [re.sub(r"[^0-9A-Za-z_]+", "_", str(c)).strip("_") for c in d.feature_names]
    return np.asarray(d.data, dtype=float), np.asarray(d.target), cols
