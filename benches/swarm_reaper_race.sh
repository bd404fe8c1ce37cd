#!/usr/bin/env bash
# Reproduces the Docker 20.10 Swarm crash that the Swarm runtime's `remove` avoids, and
# shows the avoidance holding.
#
# Each cycle: create a one-task service (host-mode port, restart none), wait until it runs,
# scale it to 0, wait until its task no longer runs, then remove the service:
#   MODE=race  remove after a jittered 150-350 ms, around the moment Swarm's task reaper
#              deletes the shut-down task (it batches for 250 ms). swarmkit's service
#              removal reads the tasks, then updates each without checking it still exists:
#              a task the reaper deleted in between is a nil dereference that KILLS dockerd.
#   MODE=wait  (default) remove only once the service has no task left, as
#              `SwarmRuntime::remove` does (`swarm_model::awaiting_reaper`).
# W workers run N cycles each, in parallel; a run stops at the first dead engine.
#
#   benches/swarm_reaper_race.sh                    # MODE=wait N=40 W=3
#   MODE=race N=120 W=3 benches/swarm_reaper_race.sh  # restart dockerd afterwards
#
# Needs the demo image (scripts/build-image.sh). Makes a one-node swarm when the engine is
# in none and leaves it as found; ports 31001..31000+W; services labelled reaper-race=1.
# Seen on the test machine (Docker 20.10.24, 2 cores): the crash twice, once in the
# operator's own Swarm roll before the fix (the 12th of 15 rolls with both cores busy) and
# once in the first race-mode run of this script (about 15 cycles in); two later
# race-mode runs (180 cycles, with and without busy cores) did not crash: the window inside
# the engine is a few microseconds wide, so it takes many cycles or luck. Wait mode: 150
# cycles, engine alive. The case for the wait is the engine's code, not these counts: once
# the reaper has deleted every task, the removal lists none and dereferences nothing.
set -u
MODE=${MODE:-wait}
N=${N:-40}
W=${W:-3}
BASE=31000
IMAGE=${IMAGE:-autoscaler-demo:latest}

case "$MODE" in
  race | wait) ;;
  *) echo "MODE must be race or wait" >&2; exit 2 ;;
esac
created_swarm=false
if [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" = inactive ]; then
  docker swarm init --advertise-addr 127.0.0.1 >/dev/null || exit 1
  created_swarm=true
fi
cleanup() {
  if docker info >/dev/null 2>&1; then
    docker service ls -q --filter label=reaper-race=1 | xargs -r docker service rm >/dev/null
    if $created_swarm; then
      sleep 2
      docker swarm leave --force >/dev/null
      sleep 1
      docker network rm docker_gwbridge >/dev/null 2>&1
    fi
  else
    echo "the engine is down: restart dockerd, then remove the services labelled reaper-race=1" >&2
  fi
}
trap cleanup EXIT

# Polls `$@` every 50 ms, at most 10 s, until it succeeds.
until_ok() {
  for _ in $(seq 200); do
    "$@" && return 0
    sleep 0.05
  done
  return 1
}
runs() { docker service ps --format '{{.CurrentState}}' "$1" 2>/dev/null | grep -q '^Running'; }
stopped() { ! runs "$1"; }
no_task() { [ -z "$(docker service ps -q "$1" 2>/dev/null)" ]; }

cycle() {
  local name="reaper-race-$1-$2"
  docker service create -d -q --no-resolve-image --name "$name" --label reaper-race=1 \
    --restart-condition none --publish "mode=host,target=8000,published=$((BASE + $1))" \
    "$IMAGE" --port 8000 >/dev/null || return 1
  until_ok runs "$name" || return 1
  docker service scale -d "$name=0" >/dev/null 2>&1 || return 1
  until_ok stopped "$name" || return 1
  if [ "$MODE" = wait ]; then
    until_ok no_task "$name" || return 1
  else
    sleep "0.$((150 + RANDOM % 200))"
  fi
  docker service rm "$name" >/dev/null 2>&1 || return 1
  until_ok test -z "$(docker ps -q --filter "label=com.docker.swarm.service.name=$name")"
}

start=$(date +%s)
for w in $(seq "$W"); do
  (
    for i in $(seq "$N"); do
      if ! cycle "$w" "$i" || ! docker info >/dev/null 2>&1; then
        docker info >/dev/null 2>&1 && echo "worker $w: cycle $i failed" ||
          echo "worker $w: ENGINE DOWN at cycle $i"
        exit 1
      fi
    done
    echo "worker $w: $N cycles, engine alive"
  ) &
done
wait
echo "MODE=$MODE: $W workers x $N cycles in $(($(date +%s) - start)) s"
if docker info >/dev/null 2>&1; then echo "engine alive"; else echo "ENGINE DEAD"; exit 1; fi
