# A stub of nixpkgs for evaluating gojinn's flake where nixpkgs cannot be fetched (CI): the parts
# of `lib` and of the package set that flake.nix and nix/ use, and a small NixOS module system
# that checks option types and reports undeclared options and failed assertions naming them, as
# nixpkgs does. Packages are derivations that evaluate (drvPath) but are never meant to build.
# Used through `--override-input nixpkgs path:./tests/nix/stub-nixpkgs` (scripts/check-nix.sh).
{
  outputs =
    { self }:
    {
      lib = import ./lib // {
        nixosSystem = import ./nixos.nix;
      };
    };
}
