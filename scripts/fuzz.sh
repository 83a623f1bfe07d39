#!/usr/bin/env bash
# Fuzzes every decoder of untrusted input (the targets in fuzz/fuzz_targets, entry points in
# src/fuzz.rs) with cargo-fuzz and libFuzzer for a bounded time each, starting from the corpus
# kept in fuzz/corpus/<target>. What a run discovers goes to a scratch directory, not the
# repository. A crash fails the run and leaves its input in fuzz/artifacts/<target>/: keep it as
# fuzz/regressions/<target>/<name> (the unit test fuzz::tests replays those) and fix the decoder.
#
# Stable Rust: coverage instrumentation needs no nightly flag; only sanitizers would, and these
# decoders are safe Rust, so none is used (`-s none`). Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
shift || true
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2 --locked

# Optimisation level 1 and 16 codegen units: the build (wasmtime included) takes a third of
# cargo-fuzz's default; the decoders still run thousands of inputs a second.
export CARGO_PROFILE_RELEASE_OPT_LEVEL=1
build=(-s none --codegen-units 16)
cargo fuzz build "${build[@]}"

targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
found=$(mktemp -d)
trap 'rm -rf "$found"' EXIT
for target in "${targets[@]}"; do
  echo "== fuzz $target (${seconds}s)"
  mkdir -p "$found/$target"
  log="$found/$target.log"
  # -timeout: an input that takes over 10 s is a hang; -rss_limit_mb: one over 2 GiB a leak.
  if ! cargo fuzz run "${build[@]}" "$target" "$found/$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz target $target failed; the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)|^#[0-9]+.*(DONE|cov:)' "$log" | tail -n 3
done
