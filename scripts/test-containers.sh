#!/usr/bin/env bash
# Tests the container image and the testcontainers-gojinn crate against a real dockerd: builds the
# example functions, the release binaries and both images (deploy/container/build.sh), prints the
# image's size and how long a `docker run` takes to answer its first request, then runs the
# crate's integration tests. Needs a running Docker daemon (Debian: apt-get install docker.io,
# then start dockerd), a static nats-server on PATH, and target/release/gojinn (as ./scripts/test.sh
# or cargo build --release left it; built here only when missing). Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "test-containers: FAILED: $*" >&2
  exit 1
}
command -v docker >/dev/null || fail "the docker client is not installed (Debian: apt-get install -y docker.io)"
docker version >/dev/null 2>&1 ||
  fail "no Docker daemon answers: start one (as root: dockerd >/tmp/dockerd.log 2>&1 &) or set DOCKER_HOST"

echo "== the example functions"
rustup target add wasm32-wasip1 >/dev/null
cargo build --quiet --release --target wasm32-wasip1 --target-dir examples/target -p hello -p echo -p json-api -p counter

echo "== the images"
[ -x target/release/gojinn ] || cargo build --release -p gojinn
deploy/container/build.sh
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)

echo "== docker run to the first answered request"
started=$(date +%s%N)
container=$(docker run -d --rm -p 127.0.0.1::8080 -v "$PWD/examples:/specs:ro" "gojinn:$version")
trap 'docker rm -f -v "$container" >/dev/null 2>&1 || true' EXIT
port=$(docker port "$container" 8080/tcp | head -n1 | sed 's/.*://')
deadline=$((SECONDS + 30))
until answer=$(curl -sf "http://127.0.0.1:$port/hello?name=docker" 2>/dev/null); do
  ((SECONDS < deadline)) || fail "gojinn:$version did not answer within 30s; its log: $(docker logs "$container" 2>&1 | tail -n 20)"
  sleep 0.01
done
echo "first answer ($answer) $(((($(date +%s%N) - started) / 1000000))) ms after docker run"
health_deadline=$((SECONDS + 30))
until [ "$(docker inspect -f '{{.State.Health.Status}}' "$container")" = healthy ]; do
  ((SECONDS < health_deadline)) || fail "the image's health check never reported healthy"
  sleep 0.2
done
echo "the image's health check reports healthy"
docker rm -f -v "$container" >/dev/null

echo "== testcontainers-gojinn"
cargo test --release -p testcontainers-gojinn "$@"
