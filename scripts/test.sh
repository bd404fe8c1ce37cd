#!/usr/bin/env bash
# The test command (README, .ci/run): lint, build the demo image, run every test.
# Needs: cargo, a running Docker engine, nginx, wrk, promtool, check-jsonschema
# (.ci/run installs the system packages; `scripts/install-deps.sh` does it by hand).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --all-targets --all-features --locked -- -D warnings
echo "==> demo image (autoscaler-demo:latest)"
scripts/build-image.sh
echo "==> cargo test"
# --all-features: the crash walk needs the fault-injection points compiled in (the
# image build above is a default build, which ignores AUTOSCALER_FAULT).
cargo test --locked --all-features -- "$@"
