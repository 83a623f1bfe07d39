# `lib.nixosSystem`: evaluates NixOS modules with the stub module system, on top of declarations
# of the few NixOS options gojinn's module sets (loosely typed where NixOS's are submodules).
# `config.system.build.toplevel` fails, as NixOS's does, on an undeclared option or a failed
# assertion, and otherwise is a stub derivation over the evaluated units and packages.
{
  system ? "x86_64-linux",
  modules,
  pkgs ? import ./. { inherit system; },
}:
let
  inherit (pkgs) lib;
  inherit (lib) mkOption types;

  nixosOptions = {
    options = {
      assertions = mkOption {
        type = types.listOf types.anything;
        default = [ ];
      };
      environment.systemPackages = mkOption {
        type = types.listOf types.package;
        default = [ ];
      };
      networking.firewall.allowedTCPPorts = mkOption {
        type = types.listOf types.port;
        default = [ ];
      };
      systemd.services = mkOption {
        type = types.attrsOf types.anything;
        default = { };
      };
      services.nats = {
        enable = lib.mkEnableOption "NATS";
        jetstream = lib.mkEnableOption "JetStream";
        host = mkOption {
          type = types.str;
          default = "127.0.0.1";
        };
        port = mkOption {
          type = types.port;
          default = 4222;
        };
        serverName = mkOption {
          type = types.str;
          default = "nats";
        };
        settings = mkOption {
          type = types.anything;
          default = { };
        };
      };
    };
  };

  evaluated = lib.evalModules {
    modules = [ nixosOptions ] ++ modules;
    args = { inherit pkgs; };
  };
  inherit (evaluated) config;
  failed = builtins.filter (a: !a.assertion) config.assertions;

  toplevel =
    if evaluated.undeclared != [ ] then
      throw "The option `${builtins.head evaluated.undeclared}' does not exist."
    else if failed != [ ] then
      throw "\nFailed assertions:\n${lib.concatMapStringsSep "\n" (a: "- ${a.message}") failed}"
    else
      derivation {
        name = "nixos-system-stub";
        inherit system;
        builder = "/bin/sh";
        args = [
          "-c"
          "exit 1"
        ];
        units = builtins.toJSON config.systemd.services;
        packages = builtins.toJSON config.environment.systemPackages;
        nats = builtins.toJSON config.services.nats;
        firewall = builtins.toJSON config.networking.firewall;
      };
in
evaluated
// {
  config = config // {
    system.build.toplevel = toplevel;
  };
}
