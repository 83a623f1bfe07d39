#!/usr/bin/env bash
# Fuzzes every decoder of untrusted input (the targets in fuzz/fuzz_targets, entry points in
# src/fuzz.rs) with libFuzzer for a bounded time each, starting from the corpus kept in
# fuzz/corpus/<target>. What a run discovers goes to a scratch directory, not the repository. A
# crash fails the run and leaves its input in fuzz/artifacts/<target>/: keep it as
# fuzz/regressions/<target>/<name> (the unit test fuzz::tests replays those) and fix the decoder.
#
# The build is cargo-fuzz's, narrowed: our crates (the library and the targets) get libFuzzer's
# coverage instrumentation and `cfg(fuzzing)` through scripts/fuzz-rustc, a
# RUSTC_WORKSPACE_WRAPPER, and are built with debug assertions; the dependencies are built plain
# and unoptimised. cargo-fuzz would instrument and optimise every dependency, wasmtime and
# Cranelift included, which costs three times the build on 2 cores for coverage of code the
# decoders hardly reach. Stable Rust: coverage instrumentation needs no nightly flag; only
# sanitizers would, and these decoders are safe Rust.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
shift || true
target_dir=target/fuzz
# libFuzzer itself (C++, built by libfuzzer-sys) optimised: unoptimised, it is most of the time.
RUSTC_WORKSPACE_WRAPPER="$PWD/scripts/fuzz-rustc" CARGO_PROFILE_DEV_DEBUG=false \
  cargo build -p gojinn-fuzz --bins --target-dir "$target_dir" \
  --config 'profile.dev.package.libfuzzer-sys.opt-level = 3'

targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(basename -s .rs fuzz/fuzz_targets/*.rs)
found=$(mktemp -d)
trap 'rm -rf "$found"' EXIT
for target in "${targets[@]}"; do
  [ -f "fuzz/fuzz_targets/$target.rs" ] || { echo "no fuzz target $target in fuzz/fuzz_targets" >&2; exit 1; }
  echo "== fuzz $target (${seconds}s)"
  mkdir -p "$found/$target" "fuzz/artifacts/$target"
  log="$found/$target.log"
  # -timeout: an input that takes over 10 s is a hang; -rss_limit_mb: one over 2 GiB a leak.
  if ! "$target_dir/debug/$target" "$found/$target" "fuzz/corpus/$target" \
    -artifact_prefix="fuzz/artifacts/$target/" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz target $target failed; the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)|^#[0-9]+.*(DONE|cov:)' "$log" | tail -n 3
done
