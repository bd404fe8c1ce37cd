#!/usr/bin/env bash
# Installs the system packages the demo and the tests need, idempotently (Debian/Ubuntu).
set -euo pipefail

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v curl >/dev/null 2>&1 || missing+=(curl)
# The tests signal processes with /usr/bin/kill (procps), not the shell builtin.
[ -x /usr/bin/kill ] || [ -x /bin/kill ] || missing+=(procps)
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if ! command -v check-jsonschema >/dev/null 2>&1; then
  echo "==> installing check-jsonschema (PyPI)"
  python3 -m pip install --quiet check-jsonschema
fi
command -v docker >/dev/null 2>&1 || { echo "docker is required (a running engine)" >&2; exit 1; }

# An engine that is installed but not running (stopped, or died: Docker 20.10's swarmkit can
# take dockerd down) is started here, so a run does not fail on what one command can fix.
engine_up() { docker info >/dev/null 2>&1; }
if ! engine_up && [ -x /usr/sbin/dockerd ] && ! pgrep -x dockerd >/dev/null; then
  echo "==> starting the Docker engine"
  $SUDO service docker start >/dev/null 2>&1 ||
    ($SUDO setsid nohup /usr/sbin/dockerd >>/tmp/autoscaler-dockerd.log 2>&1 &)
  for _ in $(seq 60); do engine_up && break; sleep 1; done
fi
engine_up || {
  echo "the Docker engine is not reachable (is dockerd running? permissions on /var/run/docker.sock?)" >&2
  exit 1
}
