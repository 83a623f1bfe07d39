# The stub package set: the builders and packages gojinn's Nix files use. Each package is a real
# derivation (so `drvPath` and `nix flake check --no-build` work) whose builder only fails; each
# builder checks the arguments gojinn passes as far as evaluation can (sources copied through
# their filters, Cargo.lock parsed, unfree licences refused unless allowed, NixOS nodes evaluated).
{
  lib,
  system,
  config,
}:
final:
let
  allowUnfree = config.allowUnfreePredicate or (_: false);

  # A derivation that evaluates and never builds. `inputs` are forced with the drvPath.
  stub =
    {
      name,
      pname ? null,
      version ? null,
      meta ? { },
      passthru ? { },
      inputs ? { },
    }:
    let
      fullName = if pname != null && version != null then "${pname}-${version}" else name;
      licence = meta.license or lib.licenses.mit;
      checked =
        if licence.free || allowUnfree { inherit pname meta; } then
          true
        else
          throw "Package '${fullName}' has an unfree license ('${licence.shortName}'), refusing to evaluate.";
      drv = derivation {
        name = fullName;
        inherit system;
        builder = "/bin/sh";
        args = [
          "-c"
          "echo 'stub nixpkgs: ${fullName} is evaluated here, never built' >&2; exit 1"
        ];
        inputs = builtins.toJSON inputs;
      };
    in
    assert checked;
    drv
    // passthru
    // {
      inherit meta;
    }
    // lib.optionalAttrs (pname != null) { inherit pname; }
    // lib.optionalAttrs (version != null) { inherit version; };

  tool =
    pname: extra:
    stub (
      {
        name = pname;
        inherit pname;
        version = "stub";
        meta.mainProgram = pname;
      }
      // extra
    );

  rustPlatform =
    { cargo, rustc }:
    {
      buildRustPackage =
        {
          pname,
          version,
          src,
          cargoLock,
          meta ? { },
          ...
        }@args:
        let
          lock = builtins.fromTOML (builtins.readFile cargoLock.lockFile);
          locked = builtins.any (package: package.name == pname && package.version == version) lock.package;
        in
        assert lib.assertMsg locked "buildRustPackage: ${pname} ${version} is not in ${toString cargoLock.lockFile}";
        stub {
          name = "${pname}-${version}";
          inherit pname version meta;
          inputs = {
            inherit src cargo rustc;
            flags = args.cargoBuildFlags or [ ];
          };
        };
      importCargoLock =
        { lockFile }:
        stub {
          name = "cargo-vendor-dir";
          inputs.packages = builtins.length (builtins.fromTOML (builtins.readFile lockFile)).package;
        };
      cargoSetupHook = stub { name = "cargo-setup-hook.sh"; };
    };
in
{
  inherit lib system;

  callPackage =
    fn: args:
    let
      f = if builtins.isFunction fn then fn else import fn;
    in
    f (builtins.intersectAttrs (builtins.functionArgs f) final // args);

  stdenv = {
    hostPlatform = {
      inherit system;
      isLinux = true;
    };
    mkDerivation =
      {
        pname,
        version,
        src,
        meta ? { },
        ...
      }@args:
      stub {
        name = "${pname}-${version}";
        inherit pname version meta;
        inputs = {
          inherit src;
          phases = map (phase: args.${phase} or "") [
            "buildPhase"
            "installPhase"
          ];
          nativeBuildInputs = args.nativeBuildInputs or [ ];
          cargoDeps = args.cargoDeps or null;
        };
      };
  };

  makeRustPlatform = rustPlatform;

  writeShellApplication =
    {
      name,
      text,
      runtimeInputs ? [ ],
    }:
    stub {
      inherit name;
      meta.mainProgram = name;
      inputs = { inherit text runtimeInputs; };
    };

  mkShell =
    {
      packages ? [ ],
      ...
    }:
    stub {
      name = "nix-shell";
      inputs = { inherit packages; };
    };

  formats.yaml =
    { }:
    {
      type = lib.types.anything // {
        description = "YAML value";
      };
      # JSON is YAML; written at evaluation time so checks can read it back.
      generate =
        name: value: builtins.toFile name (builtins.unsafeDiscardStringContext (builtins.toJSON value));
    };

  testers.runNixOSTest =
    {
      name,
      nodes,
      testScript,
    }:
    stub {
      name = "vm-test-run-${name}";
      inputs = {
        inherit testScript;
        nodes = builtins.mapAttrs (
          _: module:
          (import ./nixos.nix {
            inherit system;
            modules = [ module ];
            pkgs = final;
          }).config.system.build.toplevel
        ) nodes;
      };
    };

  nats-server = tool "nats-server" { };
  wrk = tool "wrk" { };
  terraform = tool "terraform" { meta.license = lib.licenses.bsl11; };
  docker-client = tool "docker" { };
  git = tool "git" { };
  curl = tool "curl" { };
}
