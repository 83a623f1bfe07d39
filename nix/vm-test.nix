# A NixOS VM test of the module: boots services.gojinn on a local nats-server (JetStream) with the
# example functions and secrets made at boot outside the store, calls two functions, and verifies
# the receipts of those calls with `gojinn audit verify`.
{
  testers,
  gojinn-examples,
  gojinnModule,
}:
testers.runNixOSTest {
  name = "gojinn";

  nodes.machine =
    { pkgs, ... }:
    {
      imports = [ gojinnModule ];

      # What a secret manager (sops-nix, agenix, ...) does in a real deployment.
      systemd.services.gojinn-test-secrets = {
        wantedBy = [ "gojinn.service" ];
        before = [ "gojinn.service" ];
        serviceConfig.Type = "oneshot";
        script = ''
          umask 077
          mkdir -p /run/gojinn-secrets
          od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > /run/gojinn-secrets/admin.token
          od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > /run/gojinn-secrets/audit.key
        '';
      };

      services.gojinn = {
        enable = true;
        specs = "${gojinn-examples}/share/gojinn/examples";
        adminTokenFile = "/run/gojinn-secrets/admin.token";
        auditKeyFile = "/run/gojinn-secrets/audit.key";
        nats.enable = true;
      };

      environment.systemPackages = [ pkgs.curl ];
    };

  testScript = ''
    machine.wait_for_unit("gojinn.service")
    machine.wait_until_succeeds("curl -sf http://127.0.0.1:8080/_gojinn/ready")

    greeting = machine.succeed("curl -sf 'http://127.0.0.1:8080/hello?name=nixos'")
    assert greeting == "Hello, nixos!", greeting
    count = machine.succeed("curl -sf -X POST 'http://127.0.0.1:8080/demo/counter?name=vm'")
    assert count == "1", count

    # The receipts of both calls, read through the admin API and checked with the key on this side.
    machine.succeed(
        "gojinn audit verify --tenant demo --url http://127.0.0.1:8080"
        " --token-file /run/gojinn-secrets/admin.token"
        " --key-file /run/gojinn-secrets/audit.key"
    )
    # The unit is confined as the module says.
    machine.succeed("systemctl show gojinn -p DynamicUser | grep -q DynamicUser=yes")
  '';
}
