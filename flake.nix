{
  description = "Gojinn: a self-hosted, multi-tenant serverless platform for WebAssembly functions";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
    # A pinned Rust toolchain with the wasm32-wasip1 target (nixpkgs' rustc has no wasm std).
    rust-overlay = {
      url = "github:oxalica/rust-overlay";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs =
    {
      self,
      nixpkgs,
      rust-overlay,
    }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      pkgsFor =
        system:
        import nixpkgs {
          inherit system;
          overlays = [
            rust-overlay.overlays.default
            self.overlays.default
          ];
          # Terraform's licence (BUSL) is unfree in nixpkgs; the dev shell carries it on purpose.
          config.allowUnfreePredicate = pkg: lib.getName pkg == "terraform";
        };
      forAllSystems = f: lib.genAttrs systems (system: f (pkgsFor system));
    in
    {
      overlays.default = final: prev: {
        gojinn-rust = final.callPackage ./nix/toolchain.nix { };
        gojinn-rustPlatform = final.makeRustPlatform {
          cargo = final.gojinn-rust;
          rustc = final.gojinn-rust;
        };
        gojinn = final.callPackage ./nix/package.nix { };
        gojinn-examples = final.callPackage ./nix/examples.nix { };
      };

      packages = forAllSystems (pkgs: {
        default = pkgs.gojinn;
        gojinn = pkgs.gojinn;
        examples = pkgs.gojinn-examples;
      });

      # `nix run .` serves the example functions on the embedded store, state in ./gojinn-data,
      # as the README's first command does; extra arguments go to `gojinn serve`.
      apps = forAllSystems (
        pkgs:
        let
          serveExamples = pkgs.writeShellApplication {
            name = "gojinn-serve-examples";
            runtimeInputs = [ pkgs.gojinn ];
            text = ''
              exec gojinn serve --specs ${pkgs.gojinn-examples}/share/gojinn/examples --data-dir ./gojinn-data "$@"
            '';
          };
        in
        {
          default = {
            type = "app";
            program = lib.getExe serveExamples;
          };
          gojinn = {
            type = "app";
            program = lib.getExe pkgs.gojinn;
          };
        }
      );

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [
            (pkgs.gojinn-rust.override {
              extensions = [
                "clippy"
                "rustfmt"
                "rust-src"
              ];
            })
            pkgs.nats-server
            pkgs.wrk
            pkgs.terraform
            pkgs.docker-client
            pkgs.git
          ];
        };
      });

      # `services.gojinn`; the package defaults to this flake's build for the machine's system.
      nixosModules.default =
        { lib, pkgs, ... }:
        {
          imports = [ ./nix/module.nix ];
          services.gojinn.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        };

      checks = forAllSystems (pkgs: {
        package = pkgs.gojinn;
        examples = pkgs.gojinn-examples;
        nixos = pkgs.callPackage ./nix/vm-test.nix {
          gojinnModule = self.nixosModules.default;
        };
      });
    };
}
