#!/usr/bin/env bash
# Installs the system packages the demo and the tests need, idempotently (Debian/Ubuntu).
set -euo pipefail

missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v curl >/dev/null 2>&1 || missing+=(curl)
# The tests signal processes with /usr/bin/kill (procps), not the shell builtin.
[ -x /usr/bin/kill ] || [ -x /bin/kill ] || missing+=(procps)
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if ! command -v check-jsonschema >/dev/null 2>&1; then
  echo "==> installing check-jsonschema (PyPI)"
  python3 -m pip install --quiet check-jsonschema
fi
command -v docker >/dev/null 2>&1 || { echo "docker is required (a running engine)" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "the Docker engine is not reachable" >&2; exit 1; }
