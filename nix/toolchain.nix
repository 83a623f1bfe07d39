# The Rust toolchain gojinn and its examples are built with: the release Cargo.toml names as
# `rust-version` (its latest patch), minimal profile, with the wasm32-wasip1 standard library for
# the example functions.
{ lib, rust-bin }:
rust-bin.fromRustupToolchain {
  channel = (lib.importTOML ../Cargo.toml).workspace.package.rust-version;
  profile = "minimal";
  targets = [ "wasm32-wasip1" ];
}
