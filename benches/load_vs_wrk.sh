#!/usr/bin/env bash
# Throughput of `autoscaler load --concurrency C` against wrk at the same concurrency,
# on the demo backend directly and through nginx, in one invocation. Prints ours/wrk.
#
# Usage: benches/load_vs_wrk.sh  (env: C=64 D=10s THREADS=2 RUNS=3 PORT_BASE=18300 SKIP_BUILD=)
#   DEMO_BACKEND=/path/to/demo-backend     use that binary instead of target/release's
#   AUTOSCALER=/path/to/autoscaler         measure that binary instead of target/release's
# Each run measures both targets, ours and wrk back to back (the order alternates between
# runs); the summary gives the min and median ratio per target over the runs.
# Needs: cargo, nginx, wrk, jq, curl. Everything listens on 127.0.0.1 only.
set -euo pipefail

C=${C:-64}
D=${D:-10s}
THREADS=${THREADS:-2}
RUNS=${RUNS:-3}
PORT_BASE=${PORT_BASE:-18300}
BACKEND_PORT=$PORT_BASE
PROXY_PORT=$((PORT_BASE + 1))

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
for tool in nginx wrk jq curl bc; do
  command -v "$tool" >/dev/null || { echo "load_vs_wrk: $tool is not installed" >&2; exit 2; }
done

if [ -z "${SKIP_BUILD:-}" ]; then
  echo "== building release binaries" >&2
  cargo build --release --quiet --bin autoscaler --bin demo-backend
fi
AUTOSCALER=${AUTOSCALER:-$ROOT/target/release/autoscaler}
DEMO=${DEMO_BACKEND:-$ROOT/target/release/demo-backend}

WORK=$(mktemp -d /tmp/load-vs-wrk.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

wait_http() { # url: up to 5 s for a 200
  for _ in $(seq 50); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)" = 200 ] && return 0
    sleep 0.1
  done
  return 1
}

# nginx under its own prefix; $1 = config name, $2 = server block body.
start_nginx() {
  local dir="$WORK/$1"
  mkdir -p "$dir/logs"
  cat >"$dir/nginx.conf" <<CONF
worker_processes auto;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  keepalive_requests 1000000;
  $2
}
CONF
  nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" -g 'daemon off;' &
  PIDS+=($!)
}

# The backend: demo-backend when it serves, else nginx answering `return 200`.
BACKEND_KIND=demo-backend
if [ -x "$DEMO" ]; then
  "$DEMO" --host 127.0.0.1 --port "$BACKEND_PORT" --name bench --log warn >"$WORK/demo.log" 2>&1 &
  PIDS+=($!)
fi
if ! wait_http "http://127.0.0.1:$BACKEND_PORT/"; then
  echo "== demo-backend not serving; using nginx 'return 200' as the backend" >&2
  BACKEND_KIND="nginx return 200"
  start_nginx backend "server { listen 127.0.0.1:$BACKEND_PORT; location / { return 200 \"hello\\n\"; } }"
  wait_http "http://127.0.0.1:$BACKEND_PORT/" || { echo "backend did not start" >&2; exit 1; }
fi

start_nginx proxy "upstream backend { server 127.0.0.1:$BACKEND_PORT; keepalive 128; }
  server { listen 127.0.0.1:$PROXY_PORT;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
wait_http "http://127.0.0.1:$PROXY_PORT/" || { echo "nginx proxy did not start" >&2; exit 1; }

ours() { # url -> requests/s (completed), failures on stderr
  local json
  json=$("$AUTOSCALER" --log warn load --url "$1" --concurrency "$C" --duration "$D" --json)
  echo "   ours: $(jq -r '"\(.throughput|floor) req/s, failed \(.failed), p50 \(.latency.p50_ms) ms, p99 \(.latency.p99_ms) ms"' <<<"$json")" >&2
  jq -r .throughput <<<"$json"
}

theirs() { # url -> requests/s
  local out
  out=$(wrk -c "$C" -t "$THREADS" -d "$D" --latency "$1")
  echo "   wrk:  $(awk '/Requests\/sec/ {print $2" req/s"} /Non-2xx|Socket errors/ {print}' <<<"$out" | paste -sd' ') $(awk '$1=="50%"{p50=$2} $1=="99%"{p99=$2} END{print "p50 "p50", p99 "p99}' <<<"$out")" >&2
  awk '/Requests\/sec/ {print $2}' <<<"$out"
}

echo "== backend: $BACKEND_KIND; concurrency $C, $D per run, wrk -t $THREADS; $(nproc) cores; $RUNS runs" >&2
declare -A RATIOS=()
printf '%-4s %-8s %12s %12s %8s\n' run target "ours req/s" "wrk req/s" ours/wrk
for run in $(seq "$RUNS"); do
  for target in direct nginx; do
    if [ "$target" = direct ]; then url="http://127.0.0.1:$BACKEND_PORT/"; else url="http://127.0.0.1:$PROXY_PORT/"; fi
    echo "== run $run, $target: $url" >&2
    if [ $((run % 2)) = 1 ]; then o=$(ours "$url"); w=$(theirs "$url"); else w=$(theirs "$url"); o=$(ours "$url"); fi
    r=$(echo "$o / $w" | bc -l)
    RATIOS[$target]+="$r "
    printf '%-4s %-8s %12.0f %12.0f %8.2f\n' "$run" "$target" "$o" "$w" "$r"
  done
done
for target in direct nginx; do
  # shellcheck disable=SC2086
  sorted=$(printf '%s\n' ${RATIOS[$target]} | sort -g)
  n=$(wc -l <<<"$sorted")
  printf 'ours/wrk %-8s min %.2f  median %.2f  (%s runs)\n' "$target" \
    "$(head -1 <<<"$sorted")" "$(sed -n "$(((n + 1) / 2))p" <<<"$sorted")" "$n"
done
