# Evaluation checks of the flake's NixOS module (services.gojinn) on the stub nixpkgs:
#   valid:      sample configurations evaluate, and the unit and gojinn.yaml they produce say what
#               the module promises (a string "N checks passed", or an error naming the check);
#   invalid.X:  configurations that must fail evaluation; scripts/check-nix.sh evaluates each and
#               checks the error names the option (`expectedError`).
# Called as `nix eval .#nixosModules.default --apply 'import tests/nix/module-checks.nix'`.
module:
let
  nixosSystem = import ./stub-nixpkgs/nixos.nix;
  lib = import ./stub-nixpkgs/lib;

  evaluate =
    gojinn:
    (nixosSystem {
      modules = [
        module
        { services.gojinn = { enable = true; } // gojinn; }
      ];
    }).config;

  # The rendered gojinn.yaml: the stub writes it as JSON (which is YAML) at evaluation time.
  renderedConfig =
    config: builtins.fromJSON (builtins.readFile (lib.last (lib.splitString " " config.systemd.services.gojinn.serviceConfig.ExecStart)));

  cluster = evaluate {
    specs = "/srv/gojinn/specs";
    nats.enable = true;
    adminTokenFile = "/run/keys/gojinn-admin-token";
    auditKeyFile = "/run/keys/gojinn-audit-key";
    openFirewall = true;
    listen.address = "10.0.0.5";
    settings.audit.durability = "async";
  };
  clusterUnit = cluster.systemd.services.gojinn;
  clusterYaml = renderedConfig cluster;

  fromGit = evaluate {
    git = {
      url = "https://git.example.com/ops/functions.git";
      ref = "main";
    };
    listen.address = "::1";
  };
  fromGitYaml = renderedConfig fromGit;

  checks = {
    "the node is built and its checks pass" = builtins.isString cluster.system.build.toplevel.drvPath;
    "the service runs under a dynamic user with a state directory" =
      clusterUnit.serviceConfig.DynamicUser && clusterUnit.serviceConfig.StateDirectory == "gojinn";
    "the system is read-only to the service" = clusterUnit.serviceConfig.ProtectSystem == "strict";
    "the service has no capabilities" =
      clusterUnit.serviceConfig.CapabilityBoundingSet == "" && clusterUnit.serviceConfig.AmbientCapabilities == "";
    "the syscall filter keeps what Cranelift needs to map executable code" =
      clusterUnit.serviceConfig.SystemCallFilter == [
        "@system-service"
        "~@privileged"
      ]
      && !clusterUnit.serviceConfig.MemoryDenyWriteExecute;
    "the service restarts on failure" = clusterUnit.serviceConfig.Restart == "on-failure";
    "secrets reach the service as credentials, by path" =
      clusterUnit.serviceConfig.LoadCredential == [
        "admin.token:/run/keys/gojinn-admin-token"
        "audit.key:/run/keys/gojinn-audit-key"
      ];
    "gojinn reads its secrets from the credentials directory" =
      clusterYaml.admin.tokenFile == "/run/credentials/gojinn.service/admin.token"
      && clusterYaml.audit.keyFile == "/run/credentials/gojinn.service/audit.key";
    "the local nats-server runs JetStream on loopback with room for 1 MiB values" =
      cluster.services.nats.enable
      && cluster.services.nats.jetstream
      && cluster.services.nats.host == "127.0.0.1"
      && cluster.services.nats.settings.max_payload >= 8388608;
    "gojinn uses the local nats-server and starts after it" =
      clusterYaml.state == {
        backend = "nats";
        natsUrl = "nats://127.0.0.1:4222";
      }
      && builtins.elem "nats.service" clusterUnit.requires
      && builtins.elem "nats.service" clusterUnit.after;
    "settings are merged over the generated configuration" =
      clusterYaml.audit.durability == "async" && clusterYaml.dataDir == "/var/lib/gojinn";
    "the spec directory and listen address are rendered" =
      clusterYaml.specs == "/srv/gojinn/specs" && clusterYaml.listen == "10.0.0.5:8080";
    "openFirewall opens the listen port" = cluster.networking.firewall.allowedTCPPorts == [ 8080 ];
    "the gojinn CLI is installed for audit verify" = builtins.length cluster.environment.systemPackages == 1;
    "a git source is rendered with its ref and the git CLI on the unit's path" =
      fromGitYaml.reconcile == {
        git = "https://git.example.com/ops/functions.git";
        ref = "main";
        interval = "30s";
      }
      && fromGit.systemd.services.gojinn.path != [ ];
    "an IPv6 listen address is bracketed" = fromGitYaml.listen == "[::1]:8080";
    "without nats.enable the embedded store is used and no nats-server runs" =
      fromGitYaml.state == { backend = "embedded"; }
      && !fromGit.services.nats.enable
      && fromGit.systemd.services.gojinn.requires == [ ];
    "without secret files gojinn generates its own" = !(fromGitYaml ? admin) && !(fromGitYaml ? audit);
    "the firewall stays closed by default" = fromGit.networking.firewall.allowedTCPPorts == [ ];
  };
  failed = builtins.filter (name: !checks.${name}) (builtins.attrNames checks);

  # Each: the configuration, and the text its evaluation error must contain.
  invalid = {
    port-not-a-number = {
      config.listen.port = "eighty";
      expectedError = "A definition for option `services.gojinn.listen.port' is not of type";
    };
    port-out-of-range = {
      config.listen.port = 70000;
      expectedError = "A definition for option `services.gojinn.listen.port' is not of type";
    };
    secret-in-store = {
      config.adminTokenFile = "/nix/store/00000000000000000000000000000000-admin.token";
      expectedError = "A definition for option `services.gojinn.adminTokenFile' is not of type `null or absolute path not in the Nix store'";
    };
    secret-relative = {
      config.auditKeyFile = "secrets/audit.key";
      expectedError = "A definition for option `services.gojinn.auditKeyFile' is not of type";
    };
    nats-enable-not-a-bool = {
      config.nats.enable = "yes";
      expectedError = "A definition for option `services.gojinn.nats.enable' is not of type `boolean'";
    };
    git-without-url = {
      config = {
        specs = null;
        git.ref = "main";
      };
      expectedError = "The option `services.gojinn.git.url' is used but not defined.";
    };
    unknown-option = {
      config.listenPort = 8080;
      expectedError = "The option `services.gojinn.listenPort' does not exist.";
    };
    no-spec-source = {
      config.specs = null;
      expectedError = "services.gojinn: set exactly one of `specs` and `git`.";
    };
    privileged-port = {
      config.listen.port = 80;
      expectedError = "services.gojinn.listen.port: 80 is below 1024";
    };
  };
in
{
  valid =
    if failed == [ ] then
      "${toString (builtins.length (builtins.attrNames checks))} checks passed"
    else
      throw "module checks failed: ${lib.concatStringsSep "; " failed}";

  invalid = builtins.mapAttrs (_: case: {
    inherit (case) expectedError;
    # Evaluating this must fail with `expectedError`.
    toplevel =
      (evaluate ({ specs = "/srv/gojinn/specs"; } // case.config)).system.build.toplevel.drvPath;
  }) invalid;
}
