# gojinn, built from the locked Cargo dependencies (Cargo.lock) with nix/toolchain.nix
# (`gojinn-rustPlatform`, from the flake's overlay).
{
  lib,
  callPackage,
  gojinn-rustPlatform,
}:
let
  cargoToml = lib.importTOML ../Cargo.toml;
in
gojinn-rustPlatform.buildRustPackage {
  pname = "gojinn";
  inherit (cargoToml.workspace.package) version;
  src = callPackage ./source.nix { };
  cargoLock.lockFile = ../Cargo.lock;
  cargoBuildFlags = [
    "--package"
    "gojinn"
  ];
  # The tests start nats-server, build wasm guests and listen on loopback ports: they are run by
  # ./scripts/test.sh (CI), not inside the sandbox.
  doCheck = false;

  meta = {
    inherit (cargoToml.package) description;
    license = lib.licenses.asl20;
    mainProgram = "gojinn";
    platforms = lib.platforms.linux;
  };
}
