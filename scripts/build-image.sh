#!/usr/bin/env bash
# Build the `autoscaler-demo:latest` image (FROM scratch, static binaries) in one command,
# on a machine whose Docker engine cannot pull anything.
#
#   scripts/build-image.sh [--tag NAME:TAG]
#
# Idempotent: cargo rebuilds only what changed (in its own target dir, target/static) and
# docker reuses its layer cache when the binaries are unchanged.
set -euo pipefail

tag="autoscaler-demo:latest"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tag) tag="${2:?--tag needs a value}"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "build-image.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
done

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

if ! command -v docker >/dev/null 2>&1; then
  echo "build-image.sh: docker is not installed (the image needs a Docker engine)" >&2
  exit 1
fi
if ! docker info >/dev/null 2>&1; then
  echo "build-image.sh: the Docker engine is not reachable (is dockerd running? permissions on /var/run/docker.sock?)" >&2
  exit 1
fi

target="x86_64-unknown-linux-gnu"
target_dir="$repo/target/static"
echo "build-image.sh: building static binaries in $target_dir" >&2
# --target is required: without it RUSTFLAGS would also apply to proc-macros and break them.
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked \
  --target "$target" --target-dir "$target_dir" \
  --bin demo-backend --bin autoscaler

bin_dir="$target_dir/$target/release"
context="$(mktemp -d "${TMPDIR:-/tmp}/autoscaler-image.XXXXXX")"
trap 'rm -rf "$context"' EXIT
cp "$repo/Dockerfile" "$context/Dockerfile"
cp "$bin_dir/demo-backend" "$bin_dir/autoscaler" "$context/"
# The release profile keeps line tables for backtraces; the image does not need them.
if command -v strip >/dev/null 2>&1; then
  strip --strip-debug "$context/demo-backend" "$context/autoscaler"
fi

echo "build-image.sh: docker build -t $tag" >&2
docker build --quiet -t "$tag" "$context" >/dev/null
echo "build-image.sh: built $tag ($(docker image inspect -f '{{.Size}}' "$tag") bytes)" >&2
