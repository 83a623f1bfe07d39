# A stub of rust-overlay (CI cannot fetch it): `rust-bin.fromRustupToolchain` with its arguments
# checked as rust-overlay checks them, returning an overridable stub toolchain.
{
  inputs.nixpkgs.url = "path:../stub-nixpkgs";

  outputs =
    { self, nixpkgs }:
    {
      overlays.default = final: prev: {
        rust-bin.fromRustupToolchain =
          {
            channel,
            profile ? "default",
            targets ? [ ],
            components ? [ ],
          }:
          let
            known = [
              "x86_64-unknown-linux-gnu"
              "aarch64-unknown-linux-gnu"
              "wasm32-wasip1"
              "wasm32-wasip2"
            ];
            toolchain =
              args:
              assert final.lib.assertMsg (builtins.match "[0-9]+\\.[0-9]+(\\.[0-9]+)?" channel != null)
                "Unknown channel: ${channel}";
              assert final.lib.assertMsg (builtins.elem profile [
                "minimal"
                "default"
                "complete"
              ]) "Rust ${channel} doesn't have profile `${profile}`";
              assert final.lib.assertMsg (builtins.all (t: builtins.elem t known) args.targets)
                "Unknown target in ${toString args.targets}";
              derivation {
                name = "rust-${profile}-${channel}";
                inherit (final) system;
                builder = "/bin/sh";
                args = [
                  "-c"
                  "exit 1"
                ];
                targets = args.targets;
                extensions = args.extensions;
              }
              // {
                override = more: toolchain (args // more);
              };
          in
          toolchain {
            inherit targets;
            extensions = components;
          };
      };
    };
}
