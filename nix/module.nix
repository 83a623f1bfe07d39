# `services.gojinn`: a Gojinn node as a hardened systemd service, on the embedded store or on a
# local nats-server with JetStream. Secrets (admin token, audit key) stay outside the Nix store:
# the options take their paths, and systemd hands the files to the service as credentials.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib)
    mkEnableOption
    mkIf
    mkMerge
    mkOption
    mkPackageOption
    optional
    optionalAttrs
    types
    ;
  cfg = config.services.gojinn;
  settingsFormat = pkgs.formats.yaml { };
  stateDir = "/var/lib/gojinn";
  # Where systemd puts the files of LoadCredential= for this unit.
  credentials = "/run/credentials/gojinn.service";
  secretFile = types.nullOr (
    types.pathWith {
      inStore = false;
      absolute = true;
    }
  );

  listen =
    if lib.hasInfix ":" cfg.listen.address then
      "[${cfg.listen.address}]:${toString cfg.listen.port}"
    else
      "${cfg.listen.address}:${toString cfg.listen.port}";

  # gojinn.yaml from the options; `settings` is merged over it.
  generated = {
    inherit listen;
    dataDir = stateDir;
    watch = true;
    state =
      if cfg.nats.enable then
        {
          backend = "nats";
          natsUrl = "nats://127.0.0.1:${toString cfg.nats.port}";
        }
      else
        { backend = "embedded"; };
  }
  // optionalAttrs (cfg.specs != null) { specs = "${cfg.specs}"; }
  // optionalAttrs (cfg.git != null) {
    reconcile = {
      git = cfg.git.url;
      inherit (cfg.git) interval;
    }
    // optionalAttrs (cfg.git.ref != null) { ref = cfg.git.ref; };
  }
  // optionalAttrs (cfg.adminTokenFile != null) { admin.tokenFile = "${credentials}/admin.token"; }
  // optionalAttrs (cfg.auditKeyFile != null) { audit.keyFile = "${credentials}/audit.key"; };

  configFile = settingsFormat.generate "gojinn.yaml" (lib.recursiveUpdate generated cfg.settings);
in
{
  options.services.gojinn = {
    enable = mkEnableOption "Gojinn, a serverless platform for WebAssembly functions";

    package = mkPackageOption pkgs "gojinn" { };

    listen = {
      address = mkOption {
        type = types.str;
        default = "127.0.0.1";
        description = "Address the HTTP server (functions, admin API, MCP, metrics) listens on.";
      };
      port = mkOption {
        type = types.port;
        default = 8080;
        description = "Port the HTTP server listens on (1024 or above: the service has no capabilities).";
      };
    };

    specs = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = lib.literalExpression "\"\${gojinn.packages.\${system}.examples}/share/gojinn/examples\"";
      description = "A spec directory to serve (a path in the store, or a directory on the machine). Set this or `git`.";
    };

    git = mkOption {
      default = null;
      description = "A git repository to reconcile specs from, with the default admission policies on. Set this or `specs`.";
      type = types.nullOr (
        types.submodule {
          options = {
            url = mkOption {
              type = types.str;
              example = "https://git.example.com/ops/functions.git";
              description = "Repository URL or local path.";
            };
            ref = mkOption {
              type = types.nullOr types.str;
              default = null;
              description = "Branch, tag or commit; default the remote's HEAD.";
            };
            interval = mkOption {
              type = types.str;
              default = "30s";
              description = "How often the repository is fetched and reconciled.";
            };
          };
        }
      );
    };

    adminTokenFile = mkOption {
      type = secretFile;
      default = null;
      example = "/run/secrets/gojinn-admin-token";
      description = ''
        File holding the admin bearer token. It is read by systemd and handed to the service as a
        credential, never copied to the Nix store. When null, gojinn generates a token into
        ${stateDir}/admin.token on first start.
      '';
    };

    auditKeyFile = mkOption {
      type = secretFile;
      default = null;
      example = "/run/secrets/gojinn-audit-key";
      description = ''
        File holding the receipts' master key (64 or more hex digits), handed over as the admin
        token is. When null, gojinn generates one into ${stateDir}/audit.key on first start.
      '';
    };

    nats = {
      enable = mkEnableOption "a local nats-server with JetStream (services.nats) as the state backend";
      port = mkOption {
        type = types.port;
        default = 4222;
        description = "Client port of the local nats-server (bound to 127.0.0.1).";
      };
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open `listen.port` in the firewall.";
    };

    settings = mkOption {
      type = settingsFormat.type;
      default = { };
      example = {
        audit.durability = "async";
        telemetry.otlpEndpoint = "http://127.0.0.1:4317";
      };
      description = ''
        Further gojinn.yaml keys (see the README's "Node configuration"), merged over those the
        options above produce. Unknown keys make gojinn refuse to start, naming the key.
      '';
    };
  };

  config = mkIf cfg.enable (mkMerge [
    {
      assertions = [
        {
          assertion = (cfg.specs == null) != (cfg.git == null);
          message = "services.gojinn: set exactly one of `specs` and `git`.";
        }
        {
          assertion = cfg.listen.port >= 1024;
          message = "services.gojinn.listen.port: ${toString cfg.listen.port} is below 1024, which needs a capability the service does not have; listen on a higher port behind a proxy.";
        }
      ];

      # `gojinn audit verify`, `gojinn status` and the other clients.
      environment.systemPackages = [ cfg.package ];

      systemd.services.gojinn = {
        description = "Gojinn serverless platform for WebAssembly functions";
        wantedBy = [ "multi-user.target" ];
        wants = [ "network-online.target" ];
        after = [ "network-online.target" ] ++ optional cfg.nats.enable "nats.service";
        requires = optional cfg.nats.enable "nats.service";
        # gix fetches repositories on this machine through git's upload-pack.
        path = optional (cfg.git != null) pkgs.git;
        environment.HOME = stateDir;

        serviceConfig = {
          ExecStart = "${lib.getExe cfg.package} serve --config ${configFile}";
          Restart = "on-failure";
          RestartSec = 2;
          # SIGTERM lets calls in flight and running jobs finish and appends every receipt.
          TimeoutStopSec = 60;

          DynamicUser = true;
          StateDirectory = "gojinn";
          StateDirectoryMode = "0700";
          WorkingDirectory = stateDir;
          UMask = "0077";
          LoadCredential =
            optional (cfg.adminTokenFile != null) "admin.token:${cfg.adminTokenFile}"
            ++ optional (cfg.auditKeyFile != null) "audit.key:${cfg.auditKeyFile}";
          LimitNOFILE = 65536;

          # No capabilities, no privilege changes, a read-only system.
          CapabilityBoundingSet = "";
          AmbientCapabilities = "";
          NoNewPrivileges = true;
          ProtectSystem = "strict";
          ProtectHome = true;
          PrivateTmp = true;
          PrivateDevices = true;
          ProtectKernelTunables = true;
          ProtectKernelModules = true;
          ProtectKernelLogs = true;
          ProtectControlGroups = true;
          ProtectClock = true;
          ProtectHostname = true;
          ProtectProc = "invisible";
          RestrictAddressFamilies = [
            "AF_INET"
            "AF_INET6"
            "AF_UNIX"
          ];
          RestrictNamespaces = true;
          RestrictRealtime = true;
          RestrictSUIDSGID = true;
          LockPersonality = true;
          RemoveIPC = true;
          # Cranelift compiles every function to machine code and maps it executable: W^X
          # enforcement (MemoryDenyWriteExecute) would make every call fail.
          MemoryDenyWriteExecute = false;
          SystemCallArchitectures = "native";
          # @system-service keeps mmap/mprotect with PROT_EXEC (the JIT), memfd_create
          # (copy-on-write memory images) and membarrier; privileged calls are refused.
          SystemCallFilter = [
            "@system-service"
            "~@privileged"
          ];
          SystemCallErrorNumber = "EPERM";
        };
      };
    }

    (mkIf cfg.nats.enable {
      services.nats = {
        enable = true;
        jetstream = true;
        host = "127.0.0.1";
        inherit (cfg.nats) port;
        # KV values of up to 1 MiB plus headers (README: the default 1 MB is too small).
        settings.max_payload = 8388608;
      };
    })

    (mkIf cfg.openFirewall { networking.firewall.allowedTCPPorts = [ cfg.listen.port ]; })
  ]);
}
