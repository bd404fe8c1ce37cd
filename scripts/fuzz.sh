#!/usr/bin/env bash
# Fuzz the exposition parser for a bounded time (default 60 s), seeded with the fixtures.
#
#   scripts/fuzz.sh [SECONDS]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). On a stable toolchain
# RUSTC_BOOTSTRAP=1 lets cargo-fuzz use the nightly-only sanitizer flags.
set -euo pipefail
seconds="${1:-60}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo/fuzz"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
  exit 1
fi
mkdir -p corpus/exposition  # seeded from the fixtures each run
cp "$repo"/tests/fixtures/exposition/*.txt corpus/exposition/
export RUSTC_BOOTSTRAP=1
exec cargo fuzz run exposition corpus/exposition -- -max_total_time="$seconds" -max_len=4096
