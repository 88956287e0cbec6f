#!/usr/bin/env python3
"""Time `POST /api/publish` batches on a cluster node, for one or more builds.

Starts each given fanout-server binary in turn as a node on the broker
(default: the machine's Redis), posts batches of N topic messages over one
keep-alive connection, and writes what it measured as JSON: per build, the
median and p90 of the request's wall time, alternating the builds round
by round so that a noisy machine weighs on all of them alike.

    scripts/http_batch_latency.py --out docs/reports/http-batch/report.json \
        --build before=/tmp/srv_before --build after=target/release/fanout-server

Only talks to 127.0.0.1.
"""

import argparse
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time


def cpu():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary, broker, port):
    proc = subprocess.Popen(
        [binary, "--api-key", "k", "--broker", broker, "--listen", f"127.0.0.1:{port}",
         "--log-level", "warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit(f"{binary} did not become ready on port {port}")


def time_batches(port, topic, size, count):
    body = json.dumps([{"topic": topic, "payload": {"i": i}} for i in range(size)]).encode()
    headers = {"Authorization": "Bearer k", "Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = []
    last = None
    for _ in range(count):
        t0 = time.perf_counter()
        conn.request("POST", "/api/publish", body=body, headers=headers)
        resp = conn.getresponse()
        answer = json.loads(resp.read())
        out.append((time.perf_counter() - t0) * 1e3)
        if resp.status != 200:
            sys.exit(f"HTTP {resp.status}: {answer}")
        seqs = [r["seq"] for r in answer["results"]]
        if seqs != list(range(seqs[0], seqs[0] + size)) or (last is not None and seqs[0] != last + 1):
            sys.exit(f"batch not numbered in order: {seqs}")
        last = seqs[-1]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", action="append", required=True, help="NAME=PATH of a fanout-server")
    ap.add_argument("--broker", default="redis://127.0.0.1:6379")
    ap.add_argument("--size", type=int, default=100, help="messages per batch")
    ap.add_argument("--batches", type=int, default=50, help="batches per round and build")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    builds = [b.split("=", 1) for b in a.build]
    load_before = os.getloadavg()
    times = {name: [] for name, _ in builds}
    for r in range(a.rounds):
        for name, path in builds:
            port = free_port()
            proc = start(path, a.broker, port)
            try:
                topic = f"batchlat-{os.getpid()}-{r}-{name}"
                time_batches(port, topic, a.size, 3)  # warm-up: connections, scripts
                times[name] += time_batches(port, topic, a.size, a.batches)
            finally:
                proc.terminate()
                proc.wait()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    report = {
        "machine": {"commit": commit, "cpu": cpu(), "cores": os.cpu_count(),
                    "kernel": platform.release(), "loadavg_before": load_before},
        "settings": {"broker": a.broker, "size": a.size, "batches": a.batches, "rounds": a.rounds},
        "builds": {
            name: {"path": path, "requests": len(times[name]),
                   "median_ms": statistics.median(times[name]),
                   "p90_ms": statistics.quantiles(times[name], n=10)[-1]}
            for name, path in builds
        },
    }
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(report, f, indent=2)
    for name, b in report["builds"].items():
        print(f"{name}: median {b['median_ms']:.2f} ms, p90 {b['p90_ms']:.2f} ms over {b['requests']} batches of {a.size}")


if __name__ == "__main__":
    main()
