#!/usr/bin/env python3
"""Scale-to-zero benchmark on the real Docker engine and nginx (issue 15).

    benches/cold_start.py [--runs 20] [--burst 200] [--wrk-seconds 10] [--no-wrk]

In one invocation, with one daemon and two policies (`cold`: min 0, scaleToZero, max 1;
`plain`: min 1, max 1, the baseline), it measures:

1. cold start: from zero replicas, one GET -> first response byte, --runs times
   (p50 / p99 / min / max), beside a warm request's time to first byte in the same
   iteration (the replica it just woke);
2. a burst of --burst concurrent GETs arriving at zero: failures and the latency
   distribution of the held requests;
3. warm-path throughput: `wrk` through nginx on the scale-to-zero policy (a replica up)
   vs the ordinary policy, alternated twice; the ratio of medians (goal >= 0.95).

Results go to benches/results/cold_start.json. Uses loopback ports 29450-29485 (env
BENCH_PORT_BASE moves them), its own instance label and state dir, is bounded in time,
and removes what it made on exit (daemon SIGTERM, `autoscaler down`, `docker rm -f` by
instance label, the managed nginx, its temp dir unless BENCH_KEEP is set).

Needs: the demo image (scripts/build-image.sh), docker, nginx, wrk, and a release build:
env BENCH_BIN, else target/release/autoscaler, else the static build of build-image.sh.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benches", "results")
IMAGE = os.environ.get("BENCH_IMAGE", "autoscaler-demo:latest")
BASE = int(os.environ.get("BENCH_PORT_BASE", "29450"))
COLD_LISTEN, COLD_RANGE = BASE, (BASE + 1, BASE + 10)
PLAIN_LISTEN, PLAIN_RANGE = BASE + 11, (BASE + 12, BASE + 21)
API, ACTIVATOR = BASE + 30, BASE + 31


def find_bin():
    for cand in (os.environ.get("BENCH_BIN"),
                 os.path.join(ROOT, "target", "release", "autoscaler"),
                 os.path.join(ROOT, "target", "static", "x86_64-unknown-linux-gnu",
                              "release", "autoscaler")):
        if cand and os.path.exists(cand):
            return cand
    sys.exit("no release binary: cargo build --release --bin autoscaler (or set BENCH_BIN)")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def policy(name, listen, rng, rmin, extra):
    return f"""apiVersion: autoscaler.dev/v1alpha1
kind: ScalingPolicy
metadata:
  name: {name}
spec:
  template:
    image: {IMAGE}
    args: ["--port", "8000"]
    containerPort: 8000
    readiness: {{httpGet: {{path: /healthz}}, periodMillis: 20, timeoutSeconds: 10}}
  replicas: {{min: {rmin}, max: 1}}
{extra}  ports: {{hostIp: 127.0.0.1, range: {rng[0]}-{rng[1]}}}
  loadBalancer: {{listen: "127.0.0.1:{listen}", algorithm: least_conn}}
  metrics:
    - requestRate: {{targetPerReplica: 1000}}
  drain: {{timeoutSeconds: 2}}
---
"""


def ttfb(port, timeout=30.0):
    """GET / on loopback `port`: (status, seconds to the first response byte)."""
    t = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
                  .encode())
        first = s.recv(1)
        took = time.monotonic() - t
        rest = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
    line = (first + rest).split(b"\r\n", 1)[0].split()
    status = int(line[1]) if len(line) > 1 and line[1].isdigit() else 0
    return status, took


def pct(values, p):
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


def summary_ms(values):
    ms = [v * 1000 for v in values]
    return {"n": len(ms), "p50_ms": round(pct(ms, 50), 1), "p90_ms": round(pct(ms, 90), 1),
            "p99_ms": round(pct(ms, 99), 1), "min_ms": round(min(ms), 1),
            "max_ms": round(max(ms), 1)} if ms else {"n": 0}


class World:
    def __init__(self):
        self.bin = find_bin()
        self.dir = tempfile.mkdtemp(prefix="as-zero-bench-")
        self.state = os.path.join(self.dir, "state")
        self.instance = f"as-zero-bench-{os.getpid()}"
        self.policy = os.path.join(self.dir, "policies.yaml")
        self.daemon = None

    def op_args(self):
        return ["--state-dir", self.state, "--instance", self.instance]

    def start(self):
        with open(self.policy, "w") as f:
            f.write(policy("cold", COLD_LISTEN, COLD_RANGE, 0,
                           "  scaleToZero: {idleSeconds: 1, maxPending: 1000, timeoutSeconds: 30}\n"))
            f.write(policy("plain", PLAIN_LISTEN, PLAIN_RANGE, 1, ""))
        self.log = open(os.path.join(self.dir, "daemon.log"), "w")
        self.daemon = subprocess.Popen(
            [self.bin, "--log", "info", "run", "-f", self.policy, *self.op_args(),
             "--interval", "500ms", "--listen", f"127.0.0.1:{API}",
             "--activator-listen", f"127.0.0.1:{ACTIVATOR}"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def conf(self):
        try:
            with open(os.path.join(self.state, "nginx", "nginx.conf")) as f:
                return f.read()
        except OSError:
            return ""

    def running(self, policy):
        out = subprocess.run(["docker", "ps", "-q", "--filter",
                              f"label=autoscaler.dev/instance={self.instance}",
                              "--filter", f"label=autoscaler.dev/policy={policy}"],
                             capture_output=True, text=True).stdout.split()
        return len(out)

    def at_zero(self):
        return (f"proxy_pass http://127.0.0.1:{ACTIVATOR};" in self.conf()
                and self.running("cold") == 0)

    def wait(self, what, check, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.daemon.poll() is not None:
                raise RuntimeError(f"daemon exited {self.daemon.returncode}; log in {self.dir}")
            if check():
                return
            time.sleep(0.05)
        raise RuntimeError(f"timed out waiting for {what}; log in {self.dir}/daemon.log")

    def metric(self, sample):
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{API}/metrics", timeout=2) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(sample + " "):
                    return float(line.rsplit(" ", 1)[1])
        return 0.0

    def cleanup(self):
        log(f"cleanup {self.instance}")
        if self.daemon and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
        subprocess.run([self.bin, "--log", "warn", "down", "-f", self.policy, *self.op_args()],
                       capture_output=True, timeout=180)
        ids = subprocess.run(["docker", "ps", "-aq", "--filter",
                              f"label=autoscaler.dev/instance={self.instance}"],
                             capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=300)
        try:
            with open(os.path.join(self.state, "nginx", "nginx.pid")) as f:
                os.kill(int(f.read().strip()), signal.SIGQUIT)
        except (OSError, ValueError):
            pass
        if os.environ.get("BENCH_KEEP"):
            log(f"kept {self.dir} (BENCH_KEEP)")
        else:
            time.sleep(1)  # nginx workers leave the prefix
            shutil.rmtree(self.dir, ignore_errors=True)


def wrk(port, seconds):
    out = subprocess.run(["wrk", "-t2", "-c32", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = next((float(l.split()[1]) for l in out.splitlines()
                if l.startswith("Requests/sec:")), 0.0)
    errors = sum(int(x) for l in out.splitlines() if "Non-2xx" in l for x in l.split()[-1:])
    return rps, errors


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--burst", type=int, default=200)
    ap.add_argument("--wrk-seconds", type=int, default=10)
    ap.add_argument("--no-wrk", action="store_true")
    args = ap.parse_args()
    w = World()
    result = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "host": platform.node(), "cpus": os.cpu_count(), "image": IMAGE,
              "binary": w.bin, "rerun": "benches/cold_start.py " + " ".join(sys.argv[1:])}
    try:
        w.start()
        w.wait("the plain replica", lambda: f"server 127.0.0.1:{PLAIN_RANGE[0]}" in w.conf(), 60)
        w.wait("cold at zero", w.at_zero, 60)

        cold, warm, failures = [], [], 0
        for i in range(args.runs):
            w.wait("cold back at zero", w.at_zero, 60)
            time.sleep(0.3)  # let the drained replica's removal settle
            status, took = ttfb(COLD_LISTEN)
            failures += status != 200
            cold.append(took)
            status, took_warm = ttfb(COLD_LISTEN)
            failures += status != 200
            warm.append(took_warm)
            log(f"run {i + 1}/{args.runs}: cold {took * 1000:.0f} ms (status {status}), "
                f"warm {took_warm * 1000:.1f} ms")
        result["cold_start"] = {"runs": args.runs, "failed": failures,
                                "cold": summary_ms(cold), "warm_same_run": summary_ms(warm),
                                "cold_over_warm_p50": round(statistics.median(cold)
                                                            / statistics.median(warm), 1)}

        w.wait("cold back at zero", w.at_zero, 60)
        time.sleep(0.3)
        results = [None] * args.burst
        barrier = threading.Barrier(args.burst)

        def client(k):
            barrier.wait()
            try:
                results[k] = ttfb(COLD_LISTEN, timeout=60)
            except OSError:
                results[k] = (0, None)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(args.burst)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        ok = [r[1] for r in results if r and r[0] == 200]
        result["burst_at_zero"] = {"requests": args.burst,
                                   "failed": args.burst - len(ok),
                                   "latency": summary_ms(ok),
                                   "rejections": w.metric(
                                       'autoscaler_activator_rejections_total{policy="cold"}'),
                                   "timeouts": w.metric(
                                       'autoscaler_activator_timeouts_total{policy="cold"}')}
        log(f"burst: {result['burst_at_zero']}")

        if not args.no_wrk:
            fwd = 'autoscaler_activator_forwarded_total{policy="cold"}'
            runs = {"plain": [], "cold": []}
            errors = 0
            # The cold policy stays up while wrk keeps it busy (idleSeconds 1).
            ttfb(COLD_LISTEN)
            w.wait("cold warm", lambda: f"server 127.0.0.1:{COLD_RANGE[0]}" in w.conf(), 30)
            before = w.metric(fwd)
            for rnd in range(2):
                for name, port in (("plain", PLAIN_LISTEN), ("cold", COLD_LISTEN)):
                    if name == "cold":
                        ttfb(COLD_LISTEN)
                        w.wait("cold warm", lambda: f"server 127.0.0.1:{COLD_RANGE[0]}"
                               in w.conf(), 30)
                        before = w.metric(fwd)
                    rps, err = wrk(port, args.wrk_seconds)
                    errors += err
                    runs[name].append(rps)
                    if name == "cold":
                        passed = w.metric(fwd) - before
                        log(f"wrk {name} round {rnd + 1}: {rps:.0f} req/s, "
                            f"{passed:.0f} through the activator")
                    else:
                        log(f"wrk {name} round {rnd + 1}: {rps:.0f} req/s")
            result["warm_throughput"] = {
                "wrk": "-t2 -c32 -d%ds" % args.wrk_seconds,
                "plain_rps": runs["plain"], "scale_to_zero_rps": runs["cold"],
                "ratio_of_medians": round(statistics.median(runs["cold"])
                                          / statistics.median(runs["plain"]), 3),
                "non_2xx": errors}
    finally:
        w.cleanup()
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, "cold_start.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(json.dumps(result, indent=2))
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
