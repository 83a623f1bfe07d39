# The source tree Cargo needs (every workspace member), without build output or the deployment
# files, so that editing nix/ or terraform/ does not rebuild gojinn.
{ lib }:
let
  root = toString ../.;
  notCargo = [
    ".ci"
    ".git"
    "deploy"
    "flake.lock"
    "flake.nix"
    "nix"
    "terraform"
  ];
in
lib.cleanSourceWith {
  name = "gojinn-source";
  src = ../.;
  filter =
    path: type:
    let
      relative = lib.removePrefix "${root}/" (toString path);
    in
    !(lib.elem relative notCargo) && !(type == "directory" && baseNameOf relative == "target");
}
