# `import nixpkgs { system; overlays; config; }`: the stub package set, overlays applied.
{
  system,
  overlays ? [ ],
  config ? { },
}:
let
  lib = import ./lib;
  packages = import ./packages.nix { inherit lib system config; };
in
lib.fix (lib.foldl' (set: overlay: lib.extends overlay set) packages overlays)
