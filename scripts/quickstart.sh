#!/usr/bin/env bash
# The README's first command: from a fresh machine (Docker engine, no registry) to a
# service scaling live under a load step, then clean up.
#
#   build → image → nginx + daemon on examples/quickstart.yaml → load 5 → 60 → 0 req/s
#   → watch replicas grow and shrink (status table) → `autoscaler down`
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
# One release build serves both: the image's static binaries run on the host too.
scripts/build-image.sh

bin=target/static/x86_64-unknown-linux-gnu/release/autoscaler
policy=examples/quickstart.yaml
export AUTOSCALER_STATE_DIR=${AUTOSCALER_STATE_DIR:-.autoscaler}
log=$AUTOSCALER_STATE_DIR/daemon.log
mkdir -p "$AUTOSCALER_STATE_DIR"

$bin validate -f "$policy"

cleanup() {
  echo "==> cleaning up"
  [ -n "${daemon:-}" ] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
  AUTOSCALER_LOG=warn $bin down -f "$policy" || true
}
trap cleanup EXIT

echo "==> starting the daemon (log: $log, metrics: http://127.0.0.1:9100/metrics)"
$bin run -f "$policy" >"$log" 2>&1 &
daemon=$!

for _ in $(seq 1 60); do
  curl -fsS -o /dev/null http://127.0.0.1:8080/ 2>/dev/null && break
  sleep 0.5
done
curl -fsS http://127.0.0.1:8080/ || { echo "service did not come up; see $log" >&2; exit 1; }

show() { clear 2>/dev/null || true; echo "$1"; $bin status; }

echo "==> load: 5 req/s for 10 s, 60 req/s for 30 s, then 2 req/s for 40 s (scale-down window 30 s)"
$bin load --url http://127.0.0.1:8080/ --profile "5@10s,60@30s,2@40s" >"$AUTOSCALER_STATE_DIR/load.txt" 2>/dev/null &
load=$!
for t in $(seq 1 80); do
  show "t=${t}s  (load profile 5 → 60 → 2 req/s)"
  sleep 1
done
wait "$load" || true
echo "==> load summary (the client's view: no failed request while scaling)"
cat "$AUTOSCALER_STATE_DIR/load.txt"
echo "==> last events"
grep -E '"Scaled(Up|Down)"' "$AUTOSCALER_STATE_DIR/events.jsonl" | tail -n 6 || true
