#!/usr/bin/env bash
# Checks the Terraform code: formatting, validation, the module's plan-level tests (rendered files,
# variable validation), and the local example's apply test, which starts a real 3-node cluster on
# loopback (three nats-servers, three gojinn nodes), calls it and destroys it; afterwards no
# process of it may run and its work directory must be gone. Needs terraform 1.9+, a release
# build of gojinn (target/release/gojinn), nats-server 2.10+, git, curl and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "check-terraform: FAILED: $*" >&2
  exit 1
}
command -v terraform >/dev/null ||
  fail "terraform is not installed. Install Terraform 1.9 or newer: https://developer.hashicorp.com/terraform/install (a single binary on PATH)"
version=$(terraform version -json | python3 -c 'import json,sys; print(json.load(sys.stdin)["terraform_version"])')
python3 -c 'import sys; v=tuple(map(int, sys.argv[1].split(".")[:2])); sys.exit(v < (1, 9))' "$version" ||
  fail "terraform $version is too old: the module needs 1.9+ (cross-variable validation)"
for tool in nats-server git curl python3 cargo; do
  command -v "$tool" >/dev/null || fail "$tool is not on PATH (the local example runs it)"
done
[ -x target/release/gojinn ] || fail "no target/release/gojinn: run cargo build --release first"

# Nothing here may reach the network: no version checkpoint, no provider downloads (the code uses
# built-in resources only). A CLI config variable naming a missing file only adds warnings.
export CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1 TF_INPUT=0
if [ -n "${TF_CLI_CONFIG_FILE:-}" ] && [ ! -e "$TF_CLI_CONFIG_FILE" ]; then unset TF_CLI_CONFIG_FILE; fi

echo "== terraform fmt -check"
terraform fmt -check -recursive -diff terraform || fail "terraform fmt: run terraform fmt -recursive terraform"

for dir in terraform/modules/gojinn-cluster terraform/examples/local; do
  echo "== $dir: init, validate, test"
  terraform -chdir="$dir" init -backend=false -input=false >/dev/null || fail "terraform init in $dir"
  terraform -chdir="$dir" validate -no-color || fail "terraform validate in $dir"
  start=$SECONDS
  terraform -chdir="$dir" test -no-color || fail "terraform test in $dir"
  echo "terraform test in $dir took $((SECONDS - start))s"
done

echo "== the local example left nothing behind"
work_dir=terraform/examples/local/.cluster
[ ! -e "$work_dir" ] || fail "$work_dir still exists after the test's destroy"
leftover=$(pgrep -af -- "$(pwd)/$work_dir" || true)
[ -z "$leftover" ] || fail "processes of the local example still run after destroy: $leftover"
echo "ok: no process and no file of the local cluster is left"
