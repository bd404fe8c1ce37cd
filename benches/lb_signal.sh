#!/usr/bin/env bash
# Cost of the load-balancer signal stream (issue 14), measured on loopback.
#
#   benches/lb_signal.sh            # 3 interleaved runs of each mode, 8 s each
#   RUNS=5 SECS=10 MODES="off udp" benches/lb_signal.sh
#
# Each run: `wrk -t2 -c64` through a managed-style nginx (2 workers, the config the
# operator renders: examples/signal_receiver.rs --render) to the demo backend. Modes:
#   off           no access_log (the baseline)
#   udp           syslog datagrams to the receiver on loopback UDP
#   unix          syslog datagrams to the receiver on a unix socket
#   udp-stopped   UDP configured, no receiver (operator down or restarting)
#   udp-unread    UDP socket bound but never read (kernel drops: nginx's cost alone)
#   unix-stopped  unix socket configured, no receiver
# Printed per run: req/s, ratio vs the mean of `off`, records received / requests,
# records the receiver counted lost, receiver CPU (utime+stime from /proc) as % of one
# core per 10k req/s, and nginx error-log lines per 1000 requests.
#
# Needs nginx, wrk, and a release build (made here). Ports 28000-28099. Runs under the
# shared test lock so helpers do not measure each other.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
SECS=${SECS:-8}
MODES=${MODES:-"off udp unix udp-stopped unix-stopped"}
LISTEN=127.0.0.1:28080
BACKEND_PORT=28001
UDP=127.0.0.1:28090
NGINX=${NGINX:-nginx}

if [[ -z ${AS_SIG_LOCKED:-} ]]; then
    # Build first, outside the lock.
    cargo build --release -q --example signal_receiver --bin demo-backend
    export AS_SIG_LOCKED=1
    exec flock /tmp/autoscaler-itest.lock "$0" "$@"
fi
RX=target/release/examples/signal_receiver
BACKEND=target/release/demo-backend

WORK=$(mktemp -d /tmp/as-sig-bench-XXXXXX)
chmod 755 "$WORK" # nginx workers (user nobody when run as root) reach the unix socket
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    if [[ -f $WORK/nginx/nginx.pid ]]; then
        kill -QUIT "$(cat "$WORK/nginx/nginx.pid")" 2>/dev/null || true
        sleep 0.5
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

"$BACKEND" --host 127.0.0.1 --port "$BACKEND_PORT" --log warn >"$WORK/backend.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do
    curl -fsS "http://127.0.0.1:$BACKEND_PORT/" >/dev/null 2>&1 && break
    sleep 0.1
done

clk=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run MODE -> prints one result line
run() {
    local mode=$1 endpoint="" rxpid="" prefix="$WORK/nginx"
    rm -rf "$prefix"
    mkdir -p "$prefix"
    chmod 755 "$prefix"
    case $mode in
        udp | udp-stopped | udp-unread) endpoint=$UDP ;;
        unix | unix-stopped) endpoint=unix:$prefix/signal.sock ;;
    esac
    if [[ $mode == udp || $mode == unix ]]; then
        "$RX" "$endpoint" "$WORK/stats.json" >"$WORK/rx.out" 2>&1 &
        rxpid=$!
        for _ in $(seq 50); do grep -q ready "$WORK/rx.out" 2>/dev/null && break; sleep 0.05; done
    fi
    local sinkpid=""
    if [[ $mode == udp-unread ]]; then
        python3 -c "import socket,time; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('${UDP%:*}',${UDP#*:})); time.sleep(600)" &
        sinkpid=$!
        sleep 0.3
    fi
    "$RX" --render "$prefix" "$LISTEN" "127.0.0.1:$BACKEND_PORT" $endpoint >"$prefix/nginx.conf"
    "$NGINX" -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log"
    for _ in $(seq 50); do
        curl -fsS "http://$LISTEN/" >/dev/null 2>&1 && break
        sleep 0.05
    done
    local t0="" t1=""
    [[ -n $rxpid ]] && t0=$(cpu_ticks "$rxpid")
    local out
    out=$(wrk -t2 -c64 -d"${SECS}s" "http://$LISTEN/")
    [[ -n $rxpid ]] && t1=$(cpu_ticks "$rxpid")
    local rps requests
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    kill -QUIT "$(cat "$prefix/nginx.pid")"
    for _ in $(seq 100); do [[ -f $prefix/nginx.pid ]] || break; sleep 0.05; done
    [[ -n $sinkpid ]] && kill "$sinkpid"
    local errlines
    errlines=$(grep -c . "$prefix/error.log" || true)
    local received="-" lost="-" cpu="-"
    if [[ -n $rxpid ]]; then
        sleep 0.3 # let the receiver drain the tail
        kill -TERM "$rxpid"
        wait "$rxpid" || true
        received=$(sed -E 's/.*"received_total":([0-9]+).*/\1/' "$WORK/stats.json")
        lost=$(sed -E 's/.*"dropped_total":([0-9]+).*/\1/' "$WORK/stats.json")
        cpu=$(awk -v a="$t0" -v b="$t1" -v c="$clk" -v s="$SECS" -v r="$rps" \
            'BEGIN { pct = (b - a) / c / s * 100; printf "%.1f", pct / (r / 10000) }')
    fi
    printf '%-13s %9s req/s  requests %8s  received %8s  counted-lost %7s  rx-cpu %5s %%/10k  errlog/1k %s\n' \
        "$mode" "$rps" "$requests" "$received" "$lost" "$cpu" \
        "$(awk -v e="$errlines" -v n="$requests" 'BEGIN { printf "%.1f", e * 1000 / n }')"
}

echo "# nginx $($NGINX -v 2>&1 | sed 's/.*\///'), $(nproc) cores, wrk -t2 -c64 -d${SECS}s, $RUNS runs"
echo "# net.unix.max_dgram_qlen=$(cat /proc/sys/net/unix/max_dgram_qlen) net.core.rmem_max=$(cat /proc/sys/net/core/rmem_max)"
RESULTS=$WORK/results
for i in $(seq "$RUNS"); do
    for mode in $MODES; do
        run "$mode" | tee -a "$RESULTS"
    done
done
echo "# mean req/s and ratio vs off:"
awk '{ sum[$1] += $2; n[$1]++ } END {
    base = sum["off"] / n["off"]
    for (m in sum) printf "%-13s %9.0f  ratio %.3f\n", m, sum[m] / n[m], (sum[m] / n[m]) / base
}' "$RESULTS" | sort
