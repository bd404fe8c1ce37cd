#!/usr/bin/env python3
"""Live benchmarks of `autoscaler` on the real Docker engine and the real nginx.

    benches/live.py reaction   # 5 -> 90 req/s step: time to 9 ready replicas, fast vs threshold vs
                               # the original tool's 2 s loop vs HPA defaults at a 15 s sync
    benches/live.py overhead   # daemon RSS/CPU idle with 10 replicas scraped every second, and while scaling
    benches/live.py noop       # `reconcile --once` with nothing to do vs `validate` (hyperfine)
    benches/live.py scale      # full and no-op pass vs number of policies and of replicas
    benches/live.py statewrite # idle daemon, many policies: state bytes written/s, CPU, pass p99; before vs after
    benches/live.py all        # the four above (not statewrite), in that order
    benches/live.py lbreaction # 5 -> 90 req/s step to 9 ready: load-balancer signal with burst vs
                               # the per-replica scrape vs the engine floor (8 docker runs at once)
    benches/live.py stability  # steady 60 req/s for 2 min: replica changes, 6 s stable window vs 1 s rate

Every figure is reported next to a baseline measured in the same invocation; every strategy
runs --repeats times (default 3) and is reported as min / median / max. Results go to
benches/results/<bench>.json (+ .svg plots). Each benchmark uses its own operator instance
label, state directory and loopback ports (127.0.0.1:23000-23999 by default, env
BENCH_PORT_BASE), is bounded in time, and removes what it made on exit or Ctrl-C
(`autoscaler down`, then `docker rm -f` by instance label, then the managed nginx).

Needs: a release build (`cargo build --release --bin autoscaler`, done unless --no-build),
the demo image (env BENCH_IMAGE, default autoscaler-demo:latest; scripts/build-image.sh),
docker, nginx, hyperfine (noop, scale). statewrite also needs the binary to compare with
(--baseline-bin or env BENCH_BASELINE_BIN, e.g. a release build of an older commit).
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("BENCH_BIN", os.path.join(ROOT, "target", "release", "autoscaler"))
RESULTS = os.path.join(ROOT, "benches", "results")
IMAGE = os.environ.get("BENCH_IMAGE", "autoscaler-demo:latest")
PORT_BASE = int(os.environ.get("BENCH_PORT_BASE", "23000"))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Timeout(Exception):
    """A benchmark step overran its bound."""


# --------------------------------------------------------------------------- policies

def policy_yaml(name, listen, lo, hi, rmin, rmax, behavior="", target=10):
    """One ScalingPolicy document (the quickstart's shape with our ports)."""
    return f"""apiVersion: autoscaler.dev/v1alpha1
kind: ScalingPolicy
metadata:
  name: {name}
spec:
  template:
    image: {IMAGE}
    args: ["--port", "8000"]
    containerPort: 8000
  replicas: {{min: {rmin}, max: {rmax}}}
  ports: {{hostIp: 127.0.0.1, range: {lo}-{hi}}}
  loadBalancer: {{listen: "127.0.0.1:{listen}", algorithm: least_conn}}
  metrics:
    - requestRate: {{path: /metrics, counter: http_requests_total, targetPerReplica: {target}}}
  drain: {{timeoutSeconds: 2}}
{behavior}"""


# The quickstart's behaviour (examples/quickstart.yaml).
FAST = """  behavior:
    scaleUp:
      stabilizationWindowSeconds: 0
      policies: [{type: Percent, value: 900, periodSeconds: 1}]
    scaleDown:
      stabilizationWindowSeconds: 30
"""
# The original tool's rule: +1 per evaluation while every replica is above 10 req/s.
THRESHOLD = """  behavior:
    strategy: threshold
    threshold: {upperPerReplica: 10, lowerPerReplica: 5}
"""
HPA_DEFAULTS = ""  # no behavior: HPA v2 defaults (+4 pods or +100 % per 15 s)
HPA_SYNC = "15s"  # HPA's default --horizontal-pod-autoscaler-sync-period


class OriginalTool:
    """The original Python tool, emulated as it ran (the `legacy` baseline of `reaction`).

    Its loop: scrape every replica's `/metrics`, sleep 2 s, then decide on that (now 2 s
    old) data: start one container on the next port (BASE+1, BASE+2, ...) when every
    reading is above 10 req/s, remove the newest when every reading is below 5, 1..10
    replicas. A reading is the request counter's increase since that replica's previous
    scrape over the time between them; a replica's first scrape (or a failed one) reads
    0, which holds the next scale-up for a loop. A new container goes into the nginx
    upstream (least_conn) at once and nginx is reloaded: no readiness check. Its nginx
    runs in the world's state dir, so `World.cleanup` stops it and removes the
    containers by their instance label.
    """

    LOOP_S = 2.0
    UPPER, LOWER = 10.0, 5.0

    def __init__(self, w, name, listen, lo, hi, rmin=1, rmax=10):
        self.w, self.name, self.listen, self.lo, self.hi = w, name, listen, lo, hi
        self.rmin, self.rmax = rmin, rmax
        self.prefix = os.path.join(w.state, "nginx")
        self.conf = os.path.join(self.prefix, "nginx.conf")
        self.replicas = []  # (port, container id), oldest first
        self.stop_ev = threading.Event()
        self.thread = None
        self.events = []  # (monotonic time, from, to)

    def _write_conf(self):
        servers = "".join(f"        server 127.0.0.1:{p};\n" for p, _ in self.replicas)
        text = f"""worker_processes 1;
pid {self.prefix}/nginx.pid;
error_log {self.prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {self.prefix}/client_body_temp;
    proxy_temp_path {self.prefix}/proxy_temp;
    fastcgi_temp_path {self.prefix}/fastcgi_temp;
    uwsgi_temp_path {self.prefix}/uwsgi_temp;
    scgi_temp_path {self.prefix}/scgi_temp;
    upstream {self.name} {{
        least_conn;
{servers}    }}
    server {{
        listen 127.0.0.1:{self.listen};
        location / {{ proxy_pass http://{self.name}; }}
    }}
}}
"""
        with open(self.conf, "w") as f:
            f.write(text)

    def _nginx(self, *args):
        subprocess.run(["nginx", "-p", self.prefix, "-c", self.conf, *args],
                       check=True, capture_output=True)

    def _add(self):
        port = self.lo + len(self.replicas)
        cid = subprocess.run(
            ["docker", "run", "-d", "--label", f"autoscaler.dev/instance={self.w.instance}",
             "-p", f"127.0.0.1:{port}:8000", IMAGE, "--port", "8000"],
            check=True, capture_output=True, text=True).stdout.strip()
        self.replicas.append((port, cid))

    def start(self):
        os.makedirs(self.prefix, exist_ok=True)
        while len(self.replicas) < self.rmin:
            self._add()
        self._write_conf()
        self._nginx()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def stop(self):
        self.stop_ev.set()
        if self.thread:
            self.thread.join(timeout=30)

    @staticmethod
    def _counter(port):
        """The replica's `http_requests_total{path="/"}`, or None when the scrape fails."""
        try:
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
                text = r.read().decode()
        except Exception:
            return None
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("http_requests_total{") and 'path="/"' in line)

    def _loop(self):
        last = {}  # port -> (counter, monotonic time of the scrape)
        while not self.stop_ev.is_set():
            readings = []
            for port, _ in self.replicas:
                now, counter = time.monotonic(), self._counter(port)
                prev = last.get(port)
                if counter is None or prev is None:
                    readings.append(0.0)
                else:
                    readings.append((counter - prev[0]) / max(now - prev[1], 1e-3))
                if counter is not None:
                    last[port] = (counter, now)
            if self.stop_ev.wait(self.LOOP_S):
                return
            n = len(self.replicas)
            if all(r > self.UPPER for r in readings) and n < self.rmax:
                self._add()
                self._write_conf()
                self._nginx("-s", "reload")
            elif all(r < self.LOWER for r in readings) and n > self.rmin:
                port, cid = self.replicas.pop()
                last.pop(port, None)
                self._write_conf()
                self._nginx("-s", "reload")
                subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
            else:
                continue
            self.events.append((time.monotonic(), n, len(self.replicas)))


# --------------------------------------------------------------------------- the world

class World:
    """One benchmark's private instance label, state dir and processes; cleans up on exit."""

    def __init__(self, name):
        self.name = name
        self.instance = f"bench-{name}-{os.getpid()}"
        self.dir = tempfile.mkdtemp(prefix=f"bench-{name}-")
        self.state = os.path.join(self.dir, "state")
        self.daemon = None
        self.daemon_log = None
        self.policy_paths = []

    def op_args(self):
        return ["--state-dir", self.state, "--instance", self.instance]

    def cli(self, *args, timeout=120, check=True):
        cmd = [BIN, "--log", "warn", *args]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    def write_policy(self, fname, text):
        path = os.path.join(self.dir, fname)
        with open(path, "w") as f:
            f.write(text)
        self.policy_paths.append(path)
        return path

    def start_daemon(self, policy, api_port, interval="1s"):
        self.daemon_log = open(os.path.join(self.dir, "daemon.log"), "w")
        self.daemon = subprocess.Popen(
            [BIN, "--log", "info", "run", "-f", policy, *self.op_args(),
             "--interval", interval, "--listen", f"127.0.0.1:{api_port}"],
            stdout=self.daemon_log, stderr=subprocess.STDOUT)
        return self.daemon.pid

    def stop_daemon(self):
        if self.daemon and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
        self.daemon = None

    def nginx_conf(self):
        try:
            with open(os.path.join(self.state, "nginx", "nginx.conf")) as f:
                return f.read()
        except OSError:
            return ""

    def upstream_servers(self, policy):
        """Servers of `policy`'s upstream in the live nginx.conf (ready replicas only)."""
        text = self.nginx_conf()
        m = re.search(r"upstream \S*" + re.escape(policy) + r" \{(.*?)\}", text, re.S)
        if not m:
            return 0
        return sum(1 for line in m.group(1).splitlines()
                   if line.strip().startswith("server ") and " down;" not in line)

    def ready_upstream_servers(self, policy):
        """Servers of `policy`'s upstream in the live nginx.conf that answer `/healthz`."""
        text = self.nginx_conf()
        m = re.search(r"upstream \S*" + re.escape(policy) + r" \{(.*?)\}", text, re.S)
        if not m:
            return 0
        ports = re.findall(r"server 127\.0\.0\.1:(\d+);", m.group(1))
        return sum(1 for p in ports if http_ok(f"http://127.0.0.1:{p}/healthz"))

    def nginx_pids(self):
        try:
            with open(os.path.join(self.state, "nginx", "nginx.pid")) as f:
                master = int(f.read().strip())
        except (OSError, ValueError):
            return []
        return [master] + children(master)

    def cleanup(self):
        log(f"cleanup {self.instance}")
        if getattr(self, "original", None):
            self.original.stop()
        try:
            self.stop_daemon()
        except Exception as e:  # keep cleaning
            log(f"  stopping the daemon: {e}")
        if self.policy_paths and os.path.exists(BIN):
            try:
                args = [x for p in self.policy_paths for x in ("-f", p)]
                self.cli("down", *args, *self.op_args(), timeout=180, check=False)
            except Exception as e:
                log(f"  autoscaler down: {e}")
        ids = subprocess.run(["docker", "ps", "-aq", "--filter",
                              f"label=autoscaler.dev/instance={self.instance}"],
                             capture_output=True, text=True).stdout.split()
        if ids:
            log(f"  docker rm -f {len(ids)} leftover containers")
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=300)
        for pid in self.nginx_pids()[:1]:
            try:
                os.kill(pid, signal.SIGQUIT)
            except OSError:
                pass
        if self.daemon_log:
            self.daemon_log.close()
        if os.environ.get("BENCH_KEEP"):
            log(f"  kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def world(name):
    w = World(name)
    try:
        yield w
    finally:
        w.cleanup()


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


def cpu_ticks(pid):
    """utime + stime of `pid`, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Sampler:
    """Samples RSS and CPU of a set of pids once per `period` in a thread."""

    def __init__(self, pids_fn, period=0.5):
        self.pids_fn = pids_fn
        self.period = period
        self.rss = []
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _ticks(self):
        total = 0
        for pid in self.pids_fn():
            try:
                total += cpu_ticks(pid)
            except OSError:
                pass
        return total

    def _run(self):
        while not self.stop_ev.is_set():
            total = 0
            for pid in self.pids_fn():
                try:
                    total += rss_kib(pid)
                except OSError:
                    pass
            self.rss.append(total)
            self.stop_ev.wait(self.period)

    def __enter__(self):
        self.t0 = time.monotonic()
        self.c0 = self._ticks()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        self.thread.join()
        self.secs = time.monotonic() - self.t0
        self.cpu_secs = (self._ticks() - self.c0) / CLK_TCK

    def result(self):
        return {
            "window_s": round(self.secs, 2),
            "cpu_s": round(self.cpu_secs, 3),
            "cpu_pct_of_core": round(100 * self.cpu_secs / self.secs, 3),
            "rss_mib_mean": round(statistics.mean(self.rss) / 1024, 2) if self.rss else None,
            "rss_mib_max": round(max(self.rss) / 1024, 2) if self.rss else None,
        }


def wait_for(pred, what, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise Timeout(f"{what}: not within {timeout} s")


def http_ok(url):
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=1) as r:
            return r.status == 200
    except Exception:
        return False


def meta():
    try:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "commit": commit, "cores": os.cpu_count(), "host": platform.node(),
            "loadavg_at_start": os.getloadavg()[0], "image": IMAGE}


def save(name, data):
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{name}.json")
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    log(f"wrote {os.path.relpath(path, ROOT)}")


# --------------------------------------------------------------------------- SVG

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]


def nice_axis(v):
    """(top, step): the smallest 1/2/5 x 10^k step with at most 6 ticks covering `v`."""
    import math
    v = v or 1
    k = 10 ** math.floor(math.log10(v / 6))
    for m in (1, 2, 5, 10, 20):
        step = m * k
        if math.ceil(v / step - 1e-9) <= 6:
            return step * math.ceil(v / step - 1e-9), step
    return v, v / 5


def svg_chart(path, title, xlabel, ylabel, series, step=False, hlines=(), log_y=False,
              y2=None):
    """A small line chart: series = [(label, [(x, y), ...])]; y2 = (label, points, ylabel)."""
    W, H, L, R, T, B = 720, 400, 64, 64 if y2 else 20, 36, 48
    pts = [p for _, s in series for p in s]
    xmax, xstep = nice_axis(max((x for x, _ in pts), default=1))
    ymax, ystep = nice_axis(max([y for _, y in pts] + [y for _, y in hlines], default=1) * 1.05)
    xs = lambda x: L + (W - L - R) * x / xmax
    ys = lambda y: H - B - (H - T - B) * y / ymax
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>']
    for i in range(round(ymax / ystep) + 1):
        y = ystep * i
        out.append(f'<line x1="{L}" x2="{W - R}" y1="{ys(y):.1f}" y2="{ys(y):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{L - 6}" y="{ys(y) + 4:.1f}" text-anchor="end">{y:.4g}</text>')
    for i in range(round(xmax / xstep) + 1):
        x = xstep * i
        out.append(f'<text x="{xs(x):.1f}" y="{H - B + 16}" text-anchor="middle">{x:.3g}</text>')
    out.append(f'<line x1="{L}" x2="{L}" y1="{T}" y2="{H - B}" stroke="black"/>')
    out.append(f'<line x1="{L}" x2="{W - R}" y1="{H - B}" y2="{H - B}" stroke="black"/>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 10}" text-anchor="middle">{xlabel}</text>')
    out.append(f'<text transform="translate(16,{(T + H - B) / 2}) rotate(-90)" '
               f'text-anchor="middle">{ylabel}</text>')
    for label, y in hlines:
        out.append(f'<line x1="{L}" x2="{W - R}" y1="{ys(y):.1f}" y2="{ys(y):.1f}" '
                   f'stroke="#888" stroke-dasharray="4 3"/>')
        out.append(f'<text x="{W - R - 4}" y="{ys(y) - 4:.1f}" text-anchor="end" fill="#666">{label}</text>')
    if y2:
        label2, pts2, ylabel2 = y2
        y2max, y2step = nice_axis(max((y for _, y in pts2), default=1) * 1.05)
        ys2 = lambda y: H - B - (H - T - B) * y / y2max
        d = []
        for i, (x, y) in enumerate(pts2):
            if i and step:
                d.append(f"L{xs(x):.1f},{ys2(pts2[i - 1][1]):.1f}")
            d.append(f"{'L' if i else 'M'}{xs(x):.1f},{ys2(y):.1f}")
        out.append(f'<path d="{" ".join(d)}" fill="none" stroke="#aaa" stroke-width="6" opacity="0.5"/>')
        for i in range(round(y2max / y2step) + 1):
            y = y2step * i
            out.append(f'<text x="{W - R + 6}" y="{ys2(y) + 4:.1f}" fill="#888">{y:.4g}</text>')
        out.append(f'<text transform="translate({W - 12},{(T + H - B) / 2}) rotate(90)" '
                   f'text-anchor="middle" fill="#888">{ylabel2}</text>')
    for i, (label, s) in enumerate(series):
        c = COLORS[i % len(COLORS)]
        d = []
        for j, (x, y) in enumerate(s):
            if j and step:
                d.append(f"L{xs(x):.1f},{ys(s[j - 1][1]):.1f}")
            d.append(f"{'L' if j else 'M'}{xs(x):.1f},{ys(y):.1f}")
        out.append(f'<path d="{" ".join(d)}" fill="none" stroke="{c}" stroke-width="2"/>')
        if not step:
            for x, y in s:
                out.append(f'<circle cx="{xs(x):.1f}" cy="{ys(y):.1f}" r="3" fill="{c}"/>')
        out.append(f'<rect x="{L + 12}" y="{T + 8 + 18 * i}" width="14" height="4" fill="{c}"/>')
        out.append(f'<text x="{L + 32}" y="{T + 14 + 18 * i}">{label}</text>')
    if y2:
        i = len(series)
        out.append(f'<rect x="{L + 12}" y="{T + 8 + 18 * i}" width="14" height="4" fill="#aaa"/>')
        out.append(f'<text x="{L + 32}" y="{T + 14 + 18 * i}">{y2[0]}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    log(f"wrote {os.path.relpath(path, ROOT)}")


# --------------------------------------------------------------------------- reaction

STEP_AT = 5.0


def reaction_run(kind, behavior, profile, want, interval="1s"):
    """One step run with `behavior` (None: the original tool); returns the upstream
    timeline and the load report."""
    listen, lo, hi, api = PORT_BASE, PORT_BASE + 1, PORT_BASE + 20, PORT_BASE + 90
    with world(f"reaction-{kind}") as w:
        if behavior is None:
            tool = OriginalTool(w, kind, listen, lo, hi)
            w.original = tool
            tool.start()
            pid = os.getpid()  # the emulator runs in this process
            servers = lambda: w.ready_upstream_servers(kind)  # noqa: E731 (no readiness gate)
        else:
            policy = w.write_policy("policy.yaml", policy_yaml(kind, listen, lo, hi, 1, 10, behavior))
            w.cli("validate", "-f", policy)
            pid = w.start_daemon(policy, api, interval=interval)
            servers = lambda: w.upstream_servers(kind)  # noqa: E731 (ready by construction)
        wait_for(lambda: servers() >= 1 and http_ok(f"http://127.0.0.1:{listen}/"),
                 f"{kind}: first replica behind nginx", 90)
        time.sleep(2)  # a couple of metric samples at rest
        timeline = []  # (t since load start, servers in upstream)
        out = os.path.join(w.dir, "load.json")
        with open(out, "w") as f, Sampler(lambda: [pid]) as daemon_use:
            t0 = time.monotonic()
            load = subprocess.Popen([BIN, "--log", "warn", "load", "--url",
                                     f"http://127.0.0.1:{listen}/", "--profile", profile,
                                     "--json"], stdout=f)
            last = None
            reached = None
            while load.poll() is None:
                t = time.monotonic() - t0
                if t > 120:
                    load.kill()
                    raise Timeout("load did not finish in 120 s")
                n = servers()
                if n != last:
                    timeline.append((round(t, 3), n))
                    last = n
                if reached is None and n >= want and t >= STEP_AT:
                    reached = t
                time.sleep(0.05)
            timeline.append((round(time.monotonic() - t0, 3), last))
        with open(out) as f:
            report = json.load(f)
        if behavior is None:
            tool.stop()
    reaction = round(reached - STEP_AT, 2) if reached is not None else None
    end = STEP_AT + (reaction if reaction is not None else 1e9)
    trans = [s for s in report["timeline"] if STEP_AT <= s["t"] <= end + 1]
    res = {
        "strategy": kind,
        "interval": interval,
        "reaction_s": reaction,
        "p99_ms_worst_second_in_transition": max((s["p99Ms"] for s in trans), default=None),
        "failed_in_transition": sum(s["failed"] for s in trans),
        "load": {k: report[k] for k in ("sent", "ok", "failed", "retried", "send_rate")},
        "latency_ms_whole_run": report["latency"],
        "daemon_while_scaling": daemon_use.result(),
        "upstream_timeline": timeline,
        "load_timeline": report["timeline"],
    }
    log(f"{kind}: reaction {reaction} s, p99 in transition {res['p99_ms_worst_second_in_transition']} ms, "
        f"failed {report['failed']}")
    return res


def spread(values):
    """min / median / max of the values that are not None, and how many were None. The
    median keeps the values' own precision (rounded coarser, it could exceed the max)."""
    got = [v for v in values if v is not None]
    return {"min": min(got, default=None),
            "median": round(statistics.median(got), 3) if got else None,
            "max": max(got, default=None), "runs": len(values),
            "not_reached": len(values) - len(got)}


# strategy -> (behavior or None for the emulated original tool, daemon interval, label)
STRATEGIES = {
    "fast": (FAST, "1s", "quickstart policy (Percent 900 / 1 s), 1 s interval"),
    "threshold": (THRESHOLD, "1s", "this operator's threshold strategy, 1 s interval"),
    "legacy": (None, "2s", "the original tool, emulated: scrape, sleep 2 s, decide; "
                           "first reading 0; +1/-1; no readiness"),
    "hpa": (HPA_DEFAULTS, HPA_SYNC, f"HPA defaults (no behavior) at HPA's {HPA_SYNC} sync"),
}


def bench_reaction(args):
    profile = args.profile
    want = 9
    runs = {kind: [] for kind in args.strategies}
    # Round-robin over the strategies, so a slow patch of the shared machine hits all of them.
    for rep in range(args.repeats):
        for kind in args.strategies:
            behavior, interval, _ = STRATEGIES[kind]
            log(f"reaction: {kind}, run {rep + 1} of {args.repeats}")
            runs[kind].append(reaction_run(kind, behavior, profile, want, interval))
    summary = {kind: {"label": STRATEGIES[kind][2],
                      "reaction_s": spread([r["reaction_s"] for r in rs]),
                      "p99_ms_worst_second_in_transition":
                          spread([r["p99_ms_worst_second_in_transition"] for r in rs]),
                      "failed": spread([r["load"]["failed"] for r in rs])}
               for kind, rs in runs.items()}
    fast = summary.get("fast", {}).get("reaction_s", {}).get("median")

    def ratio(kind):
        other = summary.get(kind, {}).get("reaction_s", {}).get("median")
        if fast and other:
            return round(other / fast, 2)
        return None

    data = {"bench": "reaction", "meta": meta(), "profile": profile, "step_at_s": STEP_AT,
            "target_ready_replicas": want, "repeats": args.repeats,
            "goal": "fast reaction <= 3 s and >= 5x faster than threshold (medians)",
            "speedup_vs_threshold": ratio("threshold"), "speedup_vs_original_2s": ratio("legacy"),
            "speedup_vs_hpa_defaults_15s": ratio("hpa"),
            "summary": summary, "runs": runs}
    save("reaction", data)
    # Plot the median run of each strategy.
    series = []
    for kind, rs in runs.items():
        med = summary[kind]["reaction_s"]["median"]
        r = min(rs, key=lambda r: abs((r["reaction_s"] or 1e9) - (med or 1e9)))
        label = f"{kind} ({r['reaction_s']} s)" if r["reaction_s"] is not None else f"{kind} (not reached)"
        series.append((label, [(tt, n) for tt, n in r["upstream_timeline"]]))
    first = next(iter(runs.values()))[0]
    rate = [(s["t"], s["sent"]) for s in first["load_timeline"]]
    svg_chart(os.path.join(RESULTS, "reaction.svg"),
              f"Replicas in the nginx upstream after a {profile} load step (median runs)",
              "seconds since load start", "ready replicas in upstream", series, step=True,
              hlines=[("9 replicas", 9)], y2=("offered load (req/s)", rate, "req/s"))
    print(json.dumps({k: data[k] for k in ("speedup_vs_threshold", "speedup_vs_original_2s",
                                           "speedup_vs_hpa_defaults_15s")}
                     | {k: {"reaction_s": s["reaction_s"],
                            "p99_ms": s["p99_ms_worst_second_in_transition"]}
                        for k, s in summary.items()},
                     indent=2))



# --------------------------------------------------------------------------- lbreaction

# The load balancer's signal, the quickstart's scale-up rules, burst mode on; the image
# runs with /metrics off, so nothing but nginx's view can scale it.
LB_BURST = """  behavior:
    scaleUp:
      stabilizationWindowSeconds: 0
      policies: [{type: Percent, value: 900, periodSeconds: 1}]
    scaleDown:
      stabilizationWindowSeconds: 30
    windows: {stableSeconds: 6, burstMillis: 1000, burstThreshold: 2}
"""
# Today's per-replica scrape: the quickstart (1 s rate, no burst mode for a scrape).
SCRAPE_1S = FAST + "    windows: {stableSeconds: 1}\n"
SCRAPE_6S = FAST + "    windows: {stableSeconds: 6}\n"


def lb_policy_yaml(name, listen, lo, hi, rmin, rmax, behavior, target=10):
    """`policy_yaml` on the load balancer's request rate, the demo image's /metrics off."""
    text = policy_yaml(name, listen, lo, hi, rmin, rmax, behavior, target)
    text = text.replace('args: ["--port", "8000"]', 'args: ["--port", "8000", "--no-metrics"]')
    return text.replace(
        f"- requestRate: {{path: /metrics, counter: http_requests_total, targetPerReplica: {target}}}",
        f"- loadBalancer: {{signal: requestRate, targetPerReplica: {target}}}")


def engine_floor(w, n=8):
    """Seconds from launching `n` demo containers at once (docker CLI, one thread each)
    until each answers its health check: the floor any operator starts replicas at."""
    lo = PORT_BASE + 30
    names = [f"as-lbs-floor-{os.getpid()}-{i}" for i in range(n)]
    done = [None] * n
    t0 = time.monotonic()

    def one(i):
        port = lo + i
        subprocess.run(["docker", "run", "-d", "--rm", "--name", names[i], "--label",
                        f"autoscaler.dev/instance={w.instance}", "-p", f"127.0.0.1:{port}:8000",
                        IMAGE, "--port", "8000"], capture_output=True, timeout=60, check=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if http_ok(f"http://127.0.0.1:{port}/healthz"):
                done[i] = time.monotonic() - t0
                return
            time.sleep(0.02)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    subprocess.run(["docker", "rm", "-f", *names], capture_output=True, timeout=120)
    if any(d is None for d in done):
        return None
    return round(max(done), 2)


def lbreaction_run(kind, profile, want):
    """One step run of `kind` (`lb-burst`, `scrape` or `floor`); returns its figures."""
    listen, lo, hi, api = PORT_BASE, PORT_BASE + 1, PORT_BASE + 20, PORT_BASE + 90
    with world(f"lbreaction-{kind}") as w:
        if kind == "floor":
            s = engine_floor(w)
            log(f"floor: 8 replicas answering in {s} s")
            return {"strategy": kind, "reaction_s": s}
        if kind == "lb-burst":
            text = lb_policy_yaml(kind, listen, lo, hi, 1, 10, LB_BURST)
        else:
            text = policy_yaml(kind, listen, lo, hi, 1, 10, SCRAPE_1S)
        policy = w.write_policy("policy.yaml", text)
        w.cli("validate", "-f", policy)
        w.start_daemon(policy, api)
        wait_for(lambda: w.upstream_servers(kind) >= 1 and http_ok(f"http://127.0.0.1:{listen}/"),
                 f"{kind}: first replica behind nginx", 90)
        time.sleep(2)
        out = os.path.join(w.dir, "load.json")
        timeline, reached = [], None
        with open(out, "w") as f:
            t0 = time.monotonic()
            load = subprocess.Popen([BIN, "--log", "warn", "load", "--url",
                                     f"http://127.0.0.1:{listen}/", "--profile", profile,
                                     "--json"], stdout=f)
            last = None
            while load.poll() is None:
                t = time.monotonic() - t0
                if t > 60:
                    load.kill()
                    raise Timeout("load did not finish in 60 s")
                n = w.upstream_servers(kind)
                if n != last:
                    timeline.append((round(t, 3), n))
                    last = n
                if reached is None and n >= want and t >= STEP_AT:
                    reached = t
                time.sleep(0.02)
        with open(out) as f:
            report = json.load(f)
        events = w.cli("events", *w.op_args(), check=False).stdout
    reaction = round(reached - STEP_AT, 2) if reached is not None else None
    ups = [line for line in events.splitlines() if "ScaledUp" in line]
    log(f"{kind}: reaction {reaction} s, failed {report['failed']}; first scale-up: "
        f"{ups[0][:160] if ups else '-'}")
    return {"strategy": kind, "reaction_s": reaction,
            "load": {k: report[k] for k in ("sent", "ok", "failed", "retried")},
            "scale_ups": ups, "upstream_timeline": timeline}


def bench_lbreaction(args):
    profile = "5@5s,90@10s"
    want = 9
    kinds = ["floor", "lb-burst", "scrape"]
    runs = {k: [] for k in kinds}
    for rep in range(args.repeats):
        for kind in kinds:
            log(f"lbreaction: {kind}, run {rep + 1} of {args.repeats}")
            runs[kind].append(lbreaction_run(kind, profile, want))
    summary = {k: {"reaction_s": spread([r["reaction_s"] for r in rs]),
                   "failed": spread([r.get("load", {}).get("failed") for r in rs])}
               for k, rs in runs.items()}
    med = {k: summary[k]["reaction_s"]["median"] for k in kinds}
    ratio = lambda a, b: round(a / b, 2) if a and b else None  # noqa: E731
    data = {"bench": "lbreaction", "meta": meta(), "profile": profile, "step_at_s": STEP_AT,
            "target_ready_replicas": want, "repeats": args.repeats,
            "goal": "lb-burst <= 1.5 s from the step and <= 1.2x the engine floor (medians)",
            "lb_burst_vs_floor": ratio(med["lb-burst"], med["floor"]),
            "scrape_vs_lb_burst": ratio(med["scrape"], med["lb-burst"]),
            "summary": summary, "runs": runs}
    save("lbreaction", data)
    print(json.dumps({k: data[k] for k in ("lb_burst_vs_floor", "scrape_vs_lb_burst")}
                     | {k: s["reaction_s"] for k, s in summary.items()}, indent=2))


# --------------------------------------------------------------------------- stability

def stability_run(kind, behavior, seconds, settle, lb=False):
    """Steady 60 req/s for `seconds` on a service started at its 6 replicas (`min: 6`: the
    count can only move up; a ramp from 1 would measure the ramp's overshoot instead):
    changes of the upstream size after `settle` s."""
    listen, lo, hi, api = PORT_BASE + 200, PORT_BASE + 201, PORT_BASE + 220, PORT_BASE + 290
    with world(f"stability-{kind}") as w:
        make = lb_policy_yaml if lb else policy_yaml
        policy = w.write_policy("policy.yaml", make(kind, listen, lo, hi, 6, 10, behavior))
        w.cli("validate", "-f", policy)
        w.start_daemon(policy, api)
        wait_for(lambda: w.upstream_servers(kind) >= 6 and http_ok(f"http://127.0.0.1:{listen}/"),
                 f"{kind}: six replicas behind nginx", 90)
        out = os.path.join(w.dir, "load.json")
        timeline = []
        with open(out, "w") as f:
            t0 = time.monotonic()
            load = subprocess.Popen([BIN, "--log", "warn", "load", "--url",
                                     f"http://127.0.0.1:{listen}/", "--rps", "60", "--duration",
                                     f"{seconds}s", "--json"], stdout=f)
            last = None
            while load.poll() is None:
                t = time.monotonic() - t0
                if t > seconds + 30:
                    load.kill()
                    raise Timeout("load overran")
                n = w.upstream_servers(kind)
                if n != last:
                    timeline.append((round(t, 2), n))
                    last = n
                time.sleep(0.1)
        with open(out) as f:
            report = json.load(f)
    steady = [(t, n) for t, n in timeline if t >= settle]
    at_settle = next((n for t, n in reversed(timeline) if t < settle), None)
    counts = sorted({n for _, n in steady} | ({at_settle} if at_settle is not None else set()))
    res = {"strategy": kind, "changes_after_settle": len(steady), "counts_seen": counts,
           "count_at_settle": at_settle, "final": timeline[-1][1] if timeline else None,
           "load": {k: report[k] for k in ("sent", "ok", "failed")}, "timeline": timeline}
    log(f"{kind}: {len(steady)} changes after {settle} s, counts {counts}, failed {report['failed']}")
    return res


def bench_stability(args):
    seconds, settle = 120, 10
    kinds = {"window-6s": (SCRAPE_6S, False), "rate-1s": (SCRAPE_1S, False),
             "lb-6s": (LB_BURST, True)}
    runs = {k: stability_run(k, b, seconds, settle, lb) for k, (b, lb) in kinds.items()}
    data = {"bench": "stability", "meta": meta(), "rps": 60, "seconds": seconds,
            "settle_s": settle, "goal": "the count stays at 6 with the stable window",
            "runs": runs}
    save("stability", data)
    print(json.dumps({k: {x: r[x] for x in ("changes_after_settle", "counts_seen", "final")}
                      for k, r in runs.items()}, indent=2))

# --------------------------------------------------------------------------- overhead

def bench_overhead(args):
    listen, lo, hi, api = PORT_BASE + 100, PORT_BASE + 101, PORT_BASE + 130, PORT_BASE + 190
    window = args.window
    with world("overhead") as w:
        policy = w.write_policy("policy.yaml", policy_yaml(
            "overhead", listen, lo, hi, 10, 20,
            FAST.replace("stabilizationWindowSeconds: 30", "stabilizationWindowSeconds: 300")))
        pid = w.start_daemon(policy, api, interval="1s")
        wait_for(lambda: w.upstream_servers("overhead") >= 10, "10 replicas behind nginx", 180)
        log(f"10 replicas ready; settling 5 s, then {window} s idle window")
        time.sleep(5)
        ids = subprocess.run(["docker", "ps", "-q", "--filter",
                              f"label=autoscaler.dev/instance={w.instance}"],
                             capture_output=True, text=True).stdout.split()
        replica_pid = int(subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", ids[0]],
                                         capture_output=True, text=True).stdout.strip())
        nginx = w.nginx_pids()
        idle_runs = []
        for rep in range(args.repeats):
            samplers = {"daemon": Sampler(lambda: [pid]),
                        "one_replica": Sampler(lambda: [replica_pid]),
                        "nginx_all_processes": Sampler(lambda: nginx)}
            for s in samplers.values():
                s.__enter__()
            time.sleep(window)
            for s in samplers.values():
                s.__exit__(None, None, None)
            idle_runs.append({k: s.result() for k, s in samplers.items()})
            log(f"idle window {rep + 1} of {args.repeats}: {idle_runs[-1]['daemon']}")
        # The window with the median daemon CPU stands for the idle figures; all are kept.
        idle = sorted(idle_runs, key=lambda r: r["daemon"]["cpu_s"])[len(idle_runs) // 2]
        idle_spread = {who: {k: spread([r[who][k] for r in idle_runs])
                             for k in ("cpu_pct_of_core", "rss_mib_mean")}
                       for who in idle}
        # While scaling: 150 req/s on 10 replicas (target 10) -> about 15 replicas.
        rate = 150
        log(f"scaling window: {rate} req/s for {window} s")
        with open(os.path.join(w.dir, "load.json"), "w") as f, \
                Sampler(lambda: [pid]) as scaling:
            subprocess.run([BIN, "--log", "warn", "load", "--url", f"http://127.0.0.1:{listen}/",
                            "--rps", str(rate), "--duration", f"{window}s", "--json"],
                           stdout=f, timeout=window + 60)
        after = w.upstream_servers("overhead")
        try:
            with open(os.path.join(w.dir, "load.json")) as f:
                rep = json.load(f)
            load_summary = {k: rep[k] for k in ("sent", "ok", "failed", "send_rate")}
        except (OSError, ValueError, KeyError) as e:
            load_summary = {"error": str(e)}
    d, r = idle["daemon"], idle["one_replica"]
    data = {
        "bench": "overhead", "meta": meta(), "interval": "1s", "replicas_idle": 10,
        "goal": "idle RSS <= 20 MiB, idle CPU <= 0.5 % of a core",
        "idle": idle, "idle_windows": args.repeats, "idle_spread": idle_spread,
        "idle_runs": idle_runs,
        "scaling": {"load_rps": rate, "load": load_summary, "replicas_after": after,
                    "daemon": scaling.result()},
        "ratios": {
            "daemon_rss_over_one_replica_rss": round(d["rss_mib_mean"] / r["rss_mib_mean"], 2)
            if r["rss_mib_mean"] else None,
            "daemon_cpu_over_one_replica_cpu": round(d["cpu_s"] / r["cpu_s"], 2) if r["cpu_s"] else None,
            "daemon_cpu_over_nginx_cpu": round(d["cpu_s"] / idle["nginx_all_processes"]["cpu_s"], 2)
            if idle["nginx_all_processes"]["cpu_s"] else None,
        },
    }
    save("overhead", data)
    print(json.dumps({"idle_spread": idle_spread, "scaling": data["scaling"],
                      "ratios": data["ratios"]}, indent=2))


# --------------------------------------------------------------------------- noop

def hyperfine(w, commands, runs, warmup, name):
    out = os.path.join(w.dir, f"{name}.json")
    subprocess.run(["hyperfine", "-N", "--style", "basic", "--warmup", str(warmup), "--runs",
                    str(runs), "--export-json", out, *commands], check=True, timeout=600,
                   stdout=sys.stderr)
    with open(out) as f:
        return json.load(f)["results"]


def summarize(r):
    return {"command": r["command"], "median_ms": round(r["median"] * 1000, 2),
            "min_ms": round(r["min"] * 1000, 2), "max_ms": round(r["max"] * 1000, 2),
            "mean_ms": round(r["mean"] * 1000, 2), "stddev_ms": round(r["stddev"] * 1000, 2),
            "min_ms": round(r["min"] * 1000, 2), "max_ms": round(r["max"] * 1000, 2),
            "runs": len(r["times"])}


def bench_noop(args):
    listen, lo, hi = PORT_BASE + 200, PORT_BASE + 201, PORT_BASE + 210
    with world("noop") as w:
        policy = w.write_policy("policy.yaml", policy_yaml("noop", listen, lo, hi, 2, 2, FAST))
        op = " ".join(w.op_args())
        first = w.cli("reconcile", "--once", "-f", policy, *w.op_args(), timeout=180)
        log("first pass:\n" + first.stdout.strip())
        second = w.cli("reconcile", "--once", "-f", policy, *w.op_args(), timeout=60)
        if "nothing to do" not in second.stdout:
            log("warning: the second pass was not a no-op:\n" + second.stdout)
        results = hyperfine(w, [f"{BIN} --log warn reconcile --once -f {policy} {op}",
                                f"{BIN} --log warn validate -f {policy}"],
                            args.runs, 3, "noop")
        last = w.cli("reconcile", "--once", "-f", policy, *w.op_args(), timeout=60)
    rec, val = summarize(results[0]), summarize(results[1])
    data = {"bench": "noop", "meta": meta(), "goal": "no-op reconcile --once median <= 100 ms",
            "replicas": 2, "still_noop_after": "nothing to do" in last.stdout,
            "reconcile_once_noop": rec, "validate_baseline": val,
            "ratio_median_reconcile_over_validate": round(rec["median_ms"] / val["median_ms"], 2)}
    save("noop", data)
    print(json.dumps({k: data[k] for k in ("reconcile_once_noop", "validate_baseline",
                                           "ratio_median_reconcile_over_validate")}, indent=2))


# --------------------------------------------------------------------------- scale

def scale_point(kind, count, policies_dir_fn, noop_runs):
    """Full pass from nothing, then no-op passes, then `down`; all timed."""
    with world(f"scale-{kind}-{count}") as w:
        paths = policies_dir_fn(w)
        fargs = [x for p in paths for x in ("-f", p)]
        t = time.monotonic()
        full = w.cli("reconcile", "--once", *fargs, *w.op_args(), timeout=600, check=False)
        full_s = time.monotonic() - t
        if full.returncode != 0:
            log(f"full pass exit {full.returncode}:\n{full.stdout[-2000:]}\n{full.stderr[-2000:]}")
        op = " ".join(w.op_args())
        results = hyperfine(w, [f"{BIN} --log warn reconcile --once {' '.join(fargs)} {op}",
                                f"{BIN} --log warn validate {' '.join(fargs)}"],
                            noop_runs, 1, f"scale-{count}")
        check = w.cli("reconcile", "--once", *fargs, *w.op_args(), timeout=120, check=False)
        noop_ok = check.stdout.count("nothing to do")
        ids = subprocess.run(["docker", "ps", "-q", "--filter",
                              f"label=autoscaler.dev/instance={w.instance}"],
                             capture_output=True, text=True).stdout.split()
        t = time.monotonic()
        down = w.cli("down", *fargs, *w.op_args(), timeout=600, check=False)
        down_s = time.monotonic() - t
        w.policy_paths = [] if down.returncode == 0 else w.policy_paths
    rec, val = summarize(results[0]), summarize(results[1])
    point = {"kind": kind, "count": count, "running_containers": len(ids),
             "full_pass_s": round(full_s, 2), "full_pass_exit": full.returncode,
             "noop_pass": rec, "validate_baseline": val,
             "noop_over_validate": round(rec["median_ms"] / val["median_ms"], 2),
             "policies_reporting_nothing_to_do": noop_ok,
             "down_s": round(down_s, 2), "down_exit": down.returncode}
    log(f"{kind} {count}: full {point['full_pass_s']} s, no-op {rec['median_ms']} ms "
        f"(validate {val['median_ms']} ms), down {point['down_s']} s, {len(ids)} containers")
    return point


def bench_scale(args):
    base = PORT_BASE + 300  # 50 policies x 4 ports: 23300-23499; one big policy from 23500

    def many(n):
        def make(w):
            docs = [policy_yaml(f"p{i:02d}", base + 4 * i, base + 4 * i + 1, base + 4 * i + 3, 2, 2, FAST)
                    for i in range(n)]
            return [w.write_policy("policies.yaml", "---\n".join(docs))]
        return make

    def big(r):
        listen = PORT_BASE + 500

        def make(w):
            return [w.write_policy("policy.yaml", policy_yaml(
                "big", listen, listen + 1, listen + r + 1, r, r, FAST))]
        return make

    points = []
    for n in args.policies:
        points.append(scale_point("policies_x2", n, many(n), args.scale_runs))
    for r in args.replicas:
        points.append(scale_point("one_policy_replicas", r, big(r), args.scale_runs))

    def per_replica(p):
        reps = p["count"] * 2 if p["kind"] == "policies_x2" else p["count"]
        return {"replicas": reps,
                "full_pass_ms_per_replica": round(1000 * p["full_pass_s"] / reps, 1),
                "noop_ms_per_replica_over_validate": round(
                    (p["noop_pass"]["median_ms"] - p["validate_baseline"]["median_ms"]) / reps, 2)}

    for p in points:
        p.update(per_replica(p))
    data = {"bench": "scale", "meta": meta(),
            "goal": "no-op pass cost linear in the number of replicas", "points": points}
    save("scale", data)
    for metric, title, unit in (("full", "Full pass from nothing", "s"),
                                ("noop", "No-op pass (median) and validate baseline", "ms")):
        series = []
        for kind, label in (("policies_x2", "N policies x 2 replicas"),
                            ("one_policy_replicas", "1 policy x N replicas")):
            ps = [p for p in points if p["kind"] == kind]
            if metric == "full":
                series.append((label, [(p["replicas"], p["full_pass_s"]) for p in ps]))
            else:
                series.append((label + " (reconcile --once)",
                               [(p["replicas"], p["noop_pass"]["median_ms"]) for p in ps]))
                series.append((label + " (validate)",
                               [(p["replicas"], p["validate_baseline"]["median_ms"]) for p in ps]))
        svg_chart(os.path.join(RESULTS, f"scale-{metric}.svg"), title, "replicas (total)",
                  unit, series)
    print(json.dumps([{k: p[k] for k in ("kind", "count", "replicas", "full_pass_s",
                                         "full_pass_ms_per_replica", "down_s")}
                      | {"noop_ms": p["noop_pass"]["median_ms"],
                         "validate_ms": p["validate_baseline"]["median_ms"]} for p in points],
                     indent=2))


# --------------------------------------------------------------------------- statewrite

def proc_io(pid):
    """/proc/<pid>/io as a dict of ints (write_bytes: bytes this process sent to storage)."""
    with open(f"/proc/{pid}/io") as f:
        return {k: int(v) for k, v in (line.split(":") for line in f)}


def pass_histogram(api_port):
    """Cumulative buckets {le: count} of autoscaler_reconcile_duration_seconds, summed over policies."""
    url = f"http://127.0.0.1:{api_port}/metrics"
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=5) as r:
        text = r.read().decode()
    buckets = {}
    for line in text.splitlines():
        m = re.match(r'autoscaler_reconcile_duration_seconds_bucket\{.*le="([^"]+)".*\} (\S+)', line)
        if m:
            le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
            buckets[le] = buckets.get(le, 0) + float(m.group(2))
    return buckets


def quantile(q, before, after):
    """histogram_quantile over the bucket increase between two scrapes (linear within a bucket)."""
    les = sorted(after)
    inc = [after[le] - before.get(le, 0) for le in les]
    total = inc[-1] if inc else 0
    if total <= 0:
        return None, 0
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for le, c in zip(les, inc):
        if c >= rank:
            if le == float("inf"):
                return prev_le, int(total)
            return prev_le + (le - prev_le) * (rank - prev_c) / max(c - prev_c, 1e-9), int(total)
        prev_le, prev_c = le, c
    return les[-1], int(total)


def statewrite_run(label, binary, n, replicas, window):
    """One idle daemon with `n` policies x `replicas`: what it writes, burns and how long a pass takes."""
    global BIN
    saved, BIN = BIN, binary
    base, api = PORT_BASE + 300, PORT_BASE + 290  # n x 4 ports from base (n <= 50)
    try:
        with world(f"statewrite-{label}") as w:
            docs = [policy_yaml(f"s{i:02d}", base + 4 * i, base + 4 * i + 1, base + 4 * i + 3,
                                replicas, replicas, FAST) for i in range(n)]
            policy = w.write_policy("policies.yaml", "---\n".join(docs))
            pid = w.start_daemon(policy, api, interval="1s")
            wait_for(lambda: all(w.upstream_servers(f"s{i:02d}") >= replicas for i in range(n)),
                     f"{n} x {replicas} replicas behind nginx", 120 + 10 * n * replicas)
            log(f"{label}: {n} x {replicas} ready; settling 10 s, then a {window} s idle window")
            time.sleep(10)
            io0, t0, c0, h0 = proc_io(pid), time.monotonic(), cpu_ticks(pid), pass_histogram(api)
            time.sleep(window)
            io1, t1, c1, h1 = proc_io(pid), time.monotonic(), cpu_ticks(pid), pass_histogram(api)
            secs = t1 - t0
            p99, passes = quantile(0.99, h0, h1)
            p50, _ = quantile(0.50, h0, h1)
            state_bytes = sum(os.path.getsize(os.path.join(d, f))
                              for d, _, fs in os.walk(w.state) for f in fs
                              if not os.path.relpath(d, w.state).startswith("nginx"))
            return {
                "binary": binary, "policies": n, "replicas_per_policy": replicas,
                "window_s": round(secs, 2),
                "write_bytes_per_s": round((io1["write_bytes"] - io0["write_bytes"]) / secs),
                "cancelled_write_bytes_per_s": round(
                    (io1["cancelled_write_bytes"] - io0["cancelled_write_bytes"]) / secs),
                "write_syscalls_per_s": round((io1["syscw"] - io0["syscw"]) / secs, 1),
                "cpu_pct_of_core": round(100 * (c1 - c0) / CLK_TCK / secs, 2),
                "passes_per_s": round(passes / secs, 1),
                "pass_p50_ms": round(1000 * p50, 2) if p50 is not None else None,
                "pass_p99_ms": round(1000 * p99, 2) if p99 is not None else None,
                "state_dir_bytes_excluding_nginx": state_bytes,
            }
    finally:
        BIN = saved


def bench_statewrite(args):
    baseline = args.baseline_bin or os.environ.get("BENCH_BASELINE_BIN")
    if not baseline or not os.access(baseline, os.X_OK):
        sys.exit("live.py statewrite: give the binary to compare with: --baseline-bin PATH "
                 "(e.g. a release build of the commit before the change)")
    n, r, window = args.sw_policies, args.sw_replicas, args.window
    runs = {"before": statewrite_run("before", baseline, n, r, window),
            "after": statewrite_run("after", BIN, n, r, window)}
    b, a = runs["before"], runs["after"]

    def ratio(k):
        return round(b[k] / a[k], 1) if a.get(k) and b.get(k) is not None else None

    data = {"bench": "statewrite", "meta": meta(), "interval": "1s",
            "goal": "idle state writes proportional to what changed, not policies x state size",
            "runs": runs,
            "before_over_after": {k: ratio(k) for k in ("write_bytes_per_s", "cpu_pct_of_core",
                                                        "pass_p99_ms", "write_syscalls_per_s")}}
    save(f"statewrite-{n}x{r}", data)
    print(json.dumps({"before": {k: b[k] for k in ("write_bytes_per_s", "cpu_pct_of_core",
                                                  "pass_p50_ms", "pass_p99_ms", "passes_per_s")},
                      "after": {k: a[k] for k in ("write_bytes_per_s", "cpu_pct_of_core",
                                                 "pass_p50_ms", "pass_p99_ms", "passes_per_s")},
                      "before_over_after": data["before_over_after"]}, indent=2))


# --------------------------------------------------------------------------- main

def preflight(args, need_hyperfine):
    for tool in ["docker", "nginx"] + (["hyperfine"] if need_hyperfine else []):
        if not shutil.which(tool):
            sys.exit(f"live.py: {tool} is not installed")
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode:
        sys.exit(f"live.py: image {IMAGE} is missing: run scripts/build-image.sh")
    if not args.no_build:
        log("cargo build --release --bin autoscaler")
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "autoscaler"],
                       cwd=ROOT, check=True)
    if not os.access(BIN, os.X_OK):
        sys.exit(f"live.py: {BIN} is missing (cargo build --release --bin autoscaler)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", choices=["reaction", "overhead", "noop", "scale", "statewrite", "all",
                                      "lbreaction", "stability"])
    ap.add_argument("--no-build", action="store_true", help="use target/release/autoscaler as is")
    ap.add_argument("--profile", default="5@5s,90@45s",
                    help="reaction: load profile (step at 5 s; long enough for the original tool)")
    ap.add_argument("--strategies", default="fast,threshold,legacy,hpa",
                    help="reaction: which of fast, threshold, legacy (the original tool, emulated), "
                         "hpa (HPA defaults at a 15 s sync) to run")
    ap.add_argument("--repeats", type=int, default=3,
                    help="reaction, overhead: runs per strategy (reported as min / median / max)")
    ap.add_argument("--window", type=int, default=25, help="overhead: seconds per window")
    ap.add_argument("--runs", type=int, default=30, help="noop: hyperfine runs")
    ap.add_argument("--scale-runs", type=int, default=5, help="scale: hyperfine runs per no-op point")
    ap.add_argument("--policies", default="10,25,50", help="scale: policy counts (x 2 replicas)")
    ap.add_argument("--replicas", default="25,50,100", help="scale: replica counts of one policy")
    ap.add_argument("--baseline-bin", help="statewrite: the binary to compare with (env BENCH_BASELINE_BIN)")
    ap.add_argument("--sw-policies", type=int, default=50, help="statewrite: policies (at most 50)")
    ap.add_argument("--sw-replicas", type=int, default=1, help="statewrite: replicas per policy (1 or 2)")
    ap.add_argument("--time-limit", type=int, default=1800, help="abort (and clean up) after this many seconds")
    args = ap.parse_args()
    args.policies = [int(x) for x in args.policies.split(",") if x]
    args.replicas = [int(x) for x in args.replicas.split(",") if x]
    args.strategies = [x for x in args.strategies.split(",") if x]
    if args.repeats < 1:
        sys.exit("live.py: --repeats must be at least 1")
    if not set(args.strategies) <= {"fast", "threshold", "legacy", "hpa"}:
        sys.exit("live.py: --strategies takes fast, threshold, legacy, hpa")
    if not 1 <= args.sw_policies <= 50 or not 1 <= args.sw_replicas <= 2:
        sys.exit("live.py: statewrite takes 1-50 policies of 1-2 replicas (the port block)")
    if max(args.policies, default=0) > 50 or max(args.replicas, default=0) > 400:
        sys.exit("live.py: at most 50 policies and 400 replicas fit the port block")

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    def on_alarm(_signum, _frame):
        raise Timeout(f"time limit of {args.time_limit} s")
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(args.time_limit)

    preflight(args, args.bench in ("noop", "scale", "all"))
    benches = {"reaction": bench_reaction, "overhead": bench_overhead, "noop": bench_noop,
               "scale": bench_scale}
    todo = list(benches) if args.bench == "all" else [args.bench]
    benches["statewrite"] = bench_statewrite
    benches["lbreaction"] = bench_lbreaction
    benches["stability"] = bench_stability
    for name in todo:
        log(f"== {name}")
        benches[name](args)


if __name__ == "__main__":
    main()
