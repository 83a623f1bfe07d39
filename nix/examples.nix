# The example functions (examples/), built for wasm32-wasip1, with the specs that serve them, laid
# out as in the source tree: share/gojinn/examples/specs.yaml next to its target/ directory, so
# `gojinn serve --specs $out/share/gojinn/examples` serves them.
{
  lib,
  stdenv,
  callPackage,
  gojinn-rust,
  gojinn-rustPlatform,
}:
let
  examples = [
    "hello"
    "echo"
    "json-api"
    "counter"
  ];
in
stdenv.mkDerivation {
  pname = "gojinn-examples";
  inherit ((lib.importTOML ../Cargo.toml).workspace.package) version;
  src = callPackage ./source.nix { };
  cargoDeps = gojinn-rustPlatform.importCargoLock { lockFile = ../Cargo.lock; };
  nativeBuildInputs = [
    gojinn-rustPlatform.cargoSetupHook
    gojinn-rust
  ];

  buildPhase = ''
    runHook preBuild
    cargo build --release --offline --target wasm32-wasip1 ${
      lib.concatMapStringsSep " " (name: "--package ${name}") examples
    }
    runHook postBuild
  '';

  installPhase = ''
    runHook preInstall
    dir=$out/share/gojinn/examples
    mkdir -p $dir/target/wasm32-wasip1/release
    cp examples/specs.yaml $dir/
    for name in ${toString examples}; do
      cp target/wasm32-wasip1/release/$name.wasm $dir/target/wasm32-wasip1/release/
    done
    runHook postInstall
  '';

  # WebAssembly modules, not ELF: nothing to strip or patch.
  dontFixup = true;

  meta = {
    description = "Gojinn's example functions and the specs that serve them";
    license = lib.licenses.asl20;
  };
}
