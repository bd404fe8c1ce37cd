#!/usr/bin/env python3
"""Swarm vs plain runtime: time from a 5 -> 90 req/s step to 9 ready replicas, same run.

    benches/swarm_reaction.py [--repeats 2] [--profile 5@5s,90@35s] [--samples 5]

Both runtimes run the quickstart's fast policy (benches/live.py `reaction`, strategy
`fast`) on a one-node swarm made for the run (`docker swarm init --advertise-addr
127.0.0.1` when the engine is in none; left as found at the end, with the
`docker_gwbridge` network a leave keeps). The runs alternate docker, swarm, docker,
swarm, ... so a slow patch of the shared machine hits both. A second part times one
replica's start alone, `docker run` vs `docker service create` to a running task, to show
where Swarm's extra time goes; `docker service create` twice: with the image pinned to its
id, as the operator creates services, and by tag (`swarm_tag`), where each task start has
the node's agent ask a registry for the tag first. Results: benches/results/swarm_reaction.json.

Needs what benches/live.py needs (the demo image, nginx, docker); it uses the static
release binary scripts/build-image.sh leaves in target/static when present (env BENCH_BIN
overrides), else target/release/autoscaler (build it first). Ports 29800-29899.
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATIC = os.path.join(ROOT, "target", "static", "x86_64-unknown-linux-gnu", "release", "autoscaler")
os.environ.setdefault("BENCH_PORT_BASE", "29800")
if os.path.exists(STATIC):
    os.environ.setdefault("BENCH_BIN", STATIC)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import live  # noqa: E402 (needs the environment above at import)

SAMPLE_PORT = 29850


def docker(*args, check=True):
    p = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} -> {p.returncode}: {p.stderr.strip()}")
    return p.stdout.strip()


class OneNodeSwarm:
    """`swarm init` when the engine is in none; on exit, leave exactly what was made."""

    def __enter__(self):
        state = docker("info", "--format", "{{.Swarm.LocalNodeState}}")
        self.created = state == "inactive"
        if self.created:
            docker("swarm", "init", "--advertise-addr", "127.0.0.1")
            live.log("one-node swarm created (left again at the end)")
        elif docker("info", "--format", "{{.Swarm.ControlAvailable}}") != "true":
            raise RuntimeError("the engine is in a swarm but no manager")
        return self

    def __exit__(self, *exc):
        if self.created:
            docker("swarm", "leave", "--force", check=False)
            for _ in range(50):
                if docker("network", "rm", "docker_gwbridge", check=False) == "docker_gwbridge":
                    break
                if docker("network", "inspect", "docker_gwbridge", check=False) == "":
                    break
                time.sleep(0.2)
            live.log("left the swarm, docker_gwbridge removed")
        return False


def remove_services(instance_prefix):
    """Services a failed run left (by the bench's instance label prefix)."""
    out = docker("service", "ls", "--format", "{{.ID}} {{.Name}}", check=False)
    for line in out.splitlines():
        sid, _, _ = line.partition(" ")
        labels = docker("service", "inspect", sid, "--format",
                        '{{index .Spec.Labels "autoscaler.dev/instance"}}', check=False)
        if labels.startswith(instance_prefix):
            docker("service", "rm", sid, check=False)


def wait_healthy(port, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if live.http_ok(f"http://127.0.0.1:{port}/healthz"):
            return True
        time.sleep(0.02)
    return False


def start_latency(kind, n):
    """Seconds from the start command to the replica answering /healthz, n times."""
    out = []
    for i in range(n):
        name = f"as-swarm-bench-{kind}-{os.getpid()}-{i}"
        t0 = time.monotonic()
        if kind == "docker":
            docker("run", "-d", "--name", name, "--label", "as-swarm-bench=1",
                   "-p", f"127.0.0.1:{SAMPLE_PORT}:8000", live.IMAGE, "--port", "8000")
        else:
            # "swarm" names the image as the operator does (pinned to the local image id, so
            # the node's agent does not ask a registry); "swarm_tag" by its tag, as the
            # operator did before pinning. --no-resolve-image: the API call the operator
            # makes has no CLI-side registry lookup either.
            image = live.IMAGE if kind == "swarm_tag" else docker(
                "image", "inspect", "--format", "{{.Id}}", live.IMAGE)
            docker("service", "create", "-d", "--no-resolve-image", "--name", name,
                   "--label", "as-swarm-bench=1", "--restart-condition", "none",
                   "--publish", f"mode=host,target=8000,published={SAMPLE_PORT}",
                   image, "--port", "8000")
        ok = wait_healthy(SAMPLE_PORT)
        out.append(round(time.monotonic() - t0, 3) if ok else None)
        if kind == "docker":
            docker("rm", "-f", name, check=False)
        else:
            docker("service", "rm", name, check=False)
        # The port must be free before the next sample.
        for _ in range(200):
            if not live.http_ok(f"http://127.0.0.1:{SAMPLE_PORT}/healthz"):
                break
            time.sleep(0.05)
        time.sleep(0.5)
    return out


STEP_AT = 5.0


def reaction_run(runtime, profile, want):
    """One 5 -> 90 req/s step on `runtime` with the quickstart's fast policy; returns the
    seconds from the step to `want` ready replicas in the upstream, and the load figures.
    (benches/live.py's `reaction_run`, on the load report's camelCase keys.)"""
    base = live.PORT_BASE
    listen, lo, hi, api = base, base + 1, base + 20, base + 90
    os.environ["AUTOSCALER_RUNTIME"] = runtime
    with live.world(f"swarm-reaction-{runtime}") as w:
        policy = w.write_policy("policy.yaml",
                                live.policy_yaml(runtime, listen, lo, hi, 1, 10, live.FAST))
        w.start_daemon(policy, api, interval="1s")
        servers = lambda: w.upstream_servers(runtime)  # noqa: E731 (ready by construction)
        live.wait_for(lambda: servers() >= 1 and live.http_ok(f"http://127.0.0.1:{listen}/"),
                      f"{runtime}: first replica behind nginx", 90)
        time.sleep(2)
        out = os.path.join(w.dir, "load.json")
        timeline, reached, last = [], None, None
        with open(out, "w") as f:
            t0 = time.monotonic()
            load = subprocess.Popen([live.BIN, "--log", "warn", "load", "--url",
                                     f"http://127.0.0.1:{listen}/", "--profile", profile,
                                     "--json"], stdout=f)
            while load.poll() is None:
                t = time.monotonic() - t0
                if t > 120:
                    load.kill()
                    raise live.Timeout("load did not finish in 120 s")
                n = servers()
                if n != last:
                    timeline.append((round(t, 3), n))
                    last = n
                if reached is None and n >= want and t >= STEP_AT:
                    reached = t
                time.sleep(0.05)
        with open(out) as f:
            report = json.load(f)
        w.stop_daemon()
    reaction = round(reached - STEP_AT, 2) if reached is not None else None
    live.log(f"{runtime}: reaction {reaction} s, failed {report['failed']} of {report['sent']}")
    return {"runtime": runtime, "reaction_s": reaction, "sent": report["sent"],
            "failed": report["failed"], "retried": report["retried"],
            "upstream_timeline": timeline}


def summarize(runs, starts):
    """Per runtime: the reaction and single-start spreads, and the ratios between them."""
    summary = {}
    for runtime, rs in runs.items():
        summary[runtime] = {
            "reaction_s": live.spread([r["reaction_s"] for r in rs]),
            "failed": sum(r["failed"] for r in rs),
            "single_start_s": live.spread(starts.get(runtime, [])),
        }
    d = summary["docker"]["reaction_s"]["median"]
    s = summary["swarm"]["reaction_s"]["median"]
    summary["swarm_over_docker_reaction"] = round(s / d, 2) if d and s else None
    ds = summary["docker"]["single_start_s"]["median"]
    ss = summary["swarm"]["single_start_s"]["median"]
    summary["swarm_over_docker_single_start"] = round(ss / ds, 2) if ds and ss else None
    st = live.spread(starts.get("swarm_tag", []))
    summary["swarm_tag_single_start_s"] = st
    summary["swarm_tag_over_pinned_single_start"] = (
        round(st["median"] / ss, 2) if st.get("median") and ss else None)
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--profile", default="5@5s,90@35s")
    ap.add_argument("--samples", type=int, default=5, help="single-start samples per runtime")
    args = ap.parse_args()
    if not os.path.exists(live.BIN):
        sys.exit(f"{live.BIN} missing: run scripts/build-image.sh or cargo build --release")
    runs = {"docker": [], "swarm": []}
    starts = {}
    with OneNodeSwarm():
        try:
            for rep in range(args.repeats):
                for runtime in ("docker", "swarm"):
                    live.log(f"run {rep + 1}/{args.repeats}: {runtime}")
                    runs[runtime].append(reaction_run(runtime, args.profile, 9))
            for kind in ("docker", "swarm", "swarm_tag"):
                starts[kind] = start_latency(kind, args.samples)
                live.log(f"single start, {kind}: {starts[kind]}")
        finally:
            os.environ.pop("AUTOSCALER_RUNTIME", None)
            remove_services("bench-")
            docker("rm", "-f", *docker("ps", "-aq", "--filter", "label=as-swarm-bench=1",
                                      check=False).split(), check=False)
            leftover = docker("service", "ls", "-q", "--filter",
                                           "label=as-swarm-bench=1", check=False).split()
            if leftover:
                docker("service", "rm", *leftover, check=False)
    summary = summarize(runs, starts)
    out = {"bench": "swarm_reaction", "profile": args.profile, "target_ready_replicas": 9,
           "repeats": args.repeats, "rerun": "benches/swarm_reaction.py", "summary": summary,
           "runs": runs, "single_starts": starts}
    os.makedirs(live.RESULTS, exist_ok=True)
    path = os.path.join(live.RESULTS, "swarm_reaction.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    live.log(f"wrote {os.path.relpath(path, ROOT)}")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
