#!/usr/bin/env bash
# Checks the Nix files as far as a machine without nixpkgs can (nothing can be fetched or built
# here): every .nix file parses; the flake evaluates with nixpkgs and rust-overlay replaced by the
# stubs under tests/nix; its outputs are the ones the README names; `nix flake check --no-build`
# passes (every package, app, shell and check of every system evaluates, and the VM test's node
# configuration with it); the NixOS module's sample configurations evaluate to the unit and
# gojinn.yaml it promises; and invalid configurations fail, naming the option.
# Needs Nix 2.4 or newer (Debian: apt-get install nix-bin).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nix >/dev/null || ! command -v nix-instantiate >/dev/null; then
  echo "check-nix: nix is not installed. On Debian: apt-get install -y nix-bin (any Nix 2.4+ works)" >&2
  exit 1
fi

nix() { command nix --extra-experimental-features 'nix-command flakes' "$@"; }
stubs=(
  --override-input nixpkgs path:./tests/nix/stub-nixpkgs
  --override-input rust-overlay path:./tests/nix/stub-rust-overlay
  --no-write-lock-file
)
# Nix reports the overridden inputs on stderr; keep errors, drop that chatter.
quiet() { grep -vE "^warning: (Git tree|not writing)|^• |^    |follows '" || true; }
fail() {
  echo "check-nix: FAILED: $*" >&2
  exit 1
}
passed=0
pass() {
  echo "ok: $*"
  passed=$((passed + 1))
}

echo "== every .nix file parses"
while IFS= read -r file; do
  nix-instantiate --parse "$file" >/dev/null || fail "$file does not parse"
  pass "parses: $file"
done < <(git ls-files --cached --others --exclude-standard '*.nix')

echo "== the flake's outputs"
expect_names() {
  local attr=$1 expected=$2 actual
  actual=$(nix eval --raw "${stubs[@]}" ".#$attr" \
    --apply 'set: toString (builtins.attrNames set)' 2> >(quiet >&2)) || fail "cannot evaluate .#$attr"
  [ "$actual" = "$expected" ] || fail ".#$attr has [$actual], expected [$expected]"
  pass ".#$attr: $actual"
}
for system in x86_64-linux aarch64-linux; do
  expect_names "packages.$system" "default examples gojinn"
  expect_names "apps.$system" "default gojinn"
  expect_names "devShells.$system" "default"
  expect_names "checks.$system" "examples nixos package"
done
expect_names nixosModules "default"
expect_names overlays "default"

echo "== nix flake check --no-build"
nix flake check --no-build "${stubs[@]}" 2> >(quiet >&2) || fail "nix flake check"
pass "nix flake check --no-build"

echo "== the package carries the Cargo.toml version; nix run runs the examples server"
version=$(nix eval --raw "${stubs[@]}" .#packages.x86_64-linux.default.version 2> >(quiet >&2))
expected_version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
[ "$version" = "$expected_version" ] || fail "package version $version, Cargo.toml says $expected_version"
pass "package version $version"
program=$(nix eval --raw "${stubs[@]}" .#apps.x86_64-linux.default.program 2> >(quiet >&2))
case "$program" in
  /nix/store/*-gojinn-serve-examples/bin/gojinn-serve-examples) pass "apps.default runs $program" ;;
  *) fail "apps.default.program is $program" ;;
esac

echo "== the NixOS module: sample configurations"
module_checks=$(nix eval --impure --raw "${stubs[@]}" .#nixosModules.default \
  --apply "module: (import $PWD/tests/nix/module-checks.nix module).valid" 2> >(quiet >&2)) ||
  fail "the module's sample configurations"
pass "services.gojinn: $module_checks"

echo "== the NixOS module: invalid configurations fail naming the option"
cases=$(nix eval --impure --raw "${stubs[@]}" .#nixosModules.default \
  --apply "module: toString (builtins.attrNames (import $PWD/tests/nix/module-checks.nix module).invalid)" \
  2> >(quiet >&2))
for case in $cases; do
  expected=$(nix eval --impure --raw "${stubs[@]}" .#nixosModules.default \
    --apply "module: (import $PWD/tests/nix/module-checks.nix module).invalid.$case.expectedError" \
    2> >(quiet >&2))
  if output=$(nix eval --impure --raw "${stubs[@]}" .#nixosModules.default \
    --apply "module: (import $PWD/tests/nix/module-checks.nix module).invalid.$case.toplevel" 2>&1); then
    fail "invalid configuration '$case' evaluated; expected an error containing: $expected"
  fi
  grep -qF -- "$expected" <<<"$output" ||
    fail "invalid configuration '$case' failed with the wrong error; expected: $expected; got: $(quiet <<<"$output")"
  pass "refused ($case): $expected"
done

echo "$passed passed, 0 failed"
