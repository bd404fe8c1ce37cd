#!/usr/bin/env bash
# Fuzz every target (or the ones named) for a bounded time each (default 60 s).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     targets: exposition policy_loader nginx_render
#
# Each target starts from a corpus seeded with the repository's fixtures, and replays the
# regression inputs in tests/fixtures/fuzz/<target>/ first. An input that crashes, runs
# longer than 10 s or uses more than 2 GiB is copied there as a new regression case
# (commit it with the fix); the script then exits 1. Logs: fuzz/logs/<target>.log.
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). On a stable toolchain
# RUSTC_BOOTSTRAP=1 lets cargo-fuzz use the nightly-only sanitizer flags. The first
# (sanitizer) build takes several minutes; later runs reuse fuzz/target.
set -euo pipefail
seconds="${1:-60}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  targets=(exposition policy_loader nginx_render)
fi
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo/fuzz"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
  exit 1
fi
export RUSTC_BOOTSTRAP=1

# Seeds: copied into the (git-ignored) working corpus on every run.
seed() {
  local target="$1" dir="corpus/$1"
  mkdir -p "$dir"
  case "$target" in
    exposition) cp "$repo"/tests/fixtures/exposition/*.txt "$dir"/ ;;
    policy_loader)
      cp "$repo"/examples/*.yaml "$dir"/
      cp "$repo"/tests/fixtures/invalid/*.yaml "$dir"/
      ;;
    nginx_render) ;; # structured input: libFuzzer builds its own from scratch
    *) echo "fuzz.sh: unknown target $target" >&2; exit 1 ;;
  esac
}

max_len() {
  case "$1" in
    exposition) echo 4096 ;;
    policy_loader) echo 16384 ;;
    *) echo 4096 ;;
  esac
}

mkdir -p logs
status=0
summary=()
for target in "${targets[@]}"; do
  seed "$target"
  regressions="$repo/tests/fixtures/fuzz/$target"
  mkdir -p "$regressions" "artifacts/$target"
  rm -f artifacts/"$target"/*  # earlier runs' inputs were copied already
  log="logs/$target.log"
  echo "fuzz.sh: $target for ${seconds}s (log: fuzz/$log)" >&2
  set +e
  cargo fuzz run "$target" "corpus/$target" "$regressions" -- \
    -max_total_time="$seconds" -max_len="$(max_len "$target")" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  # Every crash/timeout/oom/leak input becomes a regression case (names are content hashes).
  found=0
  for artifact in artifacts/"$target"/{crash,timeout,oom,leak}-*; do
    [ -e "$artifact" ] || continue
    found=$((found + 1))
    cp -n "$artifact" "$regressions"/
  done
  execs="$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2}' | tail -1)"
  cov="$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)"
  corpus="$(find "corpus/$target" -type f | wc -l)"
  summary+=("$target: exit $rc, ${execs:-?} execs, ${cov:-cov ?}, corpus $corpus files, $found crash inputs")
  if [ "$rc" -ne 0 ] || [ "$found" -ne 0 ]; then
    status=1
    echo "fuzz.sh: $target failed; inputs copied to tests/fixtures/fuzz/$target/, see fuzz/$log" >&2
    tail -40 "$log" >&2
  fi
done
printf '%s\n' "${summary[@]}"
exit "$status"
