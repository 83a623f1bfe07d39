#!/usr/bin/env bash
# Builds the example functions (as the README's first command does) and commits them with their
# specs to a git repository at REPOSITORY, branch main, in the form a production spec repository
# takes: modules pinned by sha256 (the default policies require it) and the tenant replicated 3
# times. Usage: spec-repository.sh EXAMPLES_DIR REPOSITORY
set -euo pipefail
examples=$(cd "$1" && pwd)
repository=$2
functions=(hello echo json-api counter)

packages=()
for name in "${functions[@]}"; do packages+=(-p "$name"); done
(cd "$examples/.." && cargo build --quiet --release --target wasm32-wasip1 --target-dir examples/target "${packages[@]}")

rm -rf "$repository"
mkdir -p "$repository/modules"
sed_pins=()
for name in "${functions[@]}"; do
  module="$examples/target/wasm32-wasip1/release/$name.wasm"
  cp "$module" "$repository/modules/"
  sum=$(sha256sum "$module" | cut -d' ' -f1)
  sed_pins+=(-e "s#module: { path: target/wasm32-wasip1/release/$name.wasm }#module: { path: modules/$name.wasm, sha256: \"$sum\" }#")
done
sed "${sed_pins[@]}" -e '/^kind: Tenant$/,/^spec:$/ s/^spec:$/spec:\n  replicas: 3/' \
  "$examples/specs.yaml" >"$repository/specs.yaml"
if grep -q 'target/wasm32-wasip1' "$repository/specs.yaml" || ! grep -q '^  replicas: 3$' "$repository/specs.yaml"; then
  echo "spec-repository.sh: examples/specs.yaml changed shape; update this script" >&2
  exit 1
fi

git -C "$repository" init --quiet --initial-branch=main
git -C "$repository" add .
git -C "$repository" -c user.name=gojinn-example -c user.email=example@gojinn.invalid \
  commit --quiet -m "The example functions"
echo "spec repository at $repository: $(git -C "$repository" rev-parse --short HEAD)"
