# Plan-level checks of what the module renders for a 3-node cluster (and a single node).

variables {
  nodes = [
    { name = "gj-1", address = "10.0.0.1" },
    { name = "gj-2", address = "10.0.0.2" },
    { name = "gj-3", address = "10.0.0.3" },
  ]
  replicas            = 3
  spec_source         = { git = "https://git.example.com/ops/functions.git", ref = "production" }
  admin_token         = "admin-token-for-tests-0123456789abcdef"
  audit_key           = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
  nats_route_password = "route/password+with:specials"
}

run "each_nats_server_routes_to_every_other_node_with_authentication" {
  command = plan

  assert {
    condition = alltrue([for name, config in output.nats_configs : alltrue([
      for other in ["gj-1", "gj-2", "gj-3"] :
      strcontains(config, "\"nats-route://gojinn-route:route%2Fpassword%2Bwith%3Aspecials@10.0.0.${substr(other, 3, 1)}:6222\"") == (other != name)
    ])])
    error_message = "every nats-server.conf must route to the two other nodes (password URL-encoded) and not to itself"
  }
  assert {
    condition     = alltrue([for config in values(output.nats_configs) : strcontains(config, "password: \"route/password+with:specials\"")])
    error_message = "every nats-server.conf must require the route password"
  }
  assert {
    condition     = strcontains(output.nats_configs["gj-2"], "server_name: \"gj-2\"") && strcontains(output.nats_configs["gj-2"], "host: \"10.0.0.2\"\n  port: 6222")
    error_message = "a node's NATS server is named after it and routes on its own address"
  }
  assert {
    condition     = alltrue([for config in values(output.nats_configs) : strcontains(config, "jetstream {") && strcontains(config, "max_payload: 8MB") && strcontains(config, "host: \"127.0.0.1\"\nport: 4222")])
    error_message = "JetStream on, 8MB payloads, and the client port on loopback by default"
  }
}

run "gojinn_yaml_points_each_node_at_its_nats_and_the_spec_repository" {
  command = plan

  assert {
    condition = yamldecode(output.gojinn_configs["gj-3"]) == {
      listen  = "10.0.0.3:8080"
      dataDir = "/var/lib/gojinn"
      watch   = true
      reconcile = {
        git             = "https://git.example.com/ops/functions.git"
        ref             = "production"
        interval        = "30s"
        defaultPolicies = true
      }
      state = { backend = "nats", natsUrl = "nats://127.0.0.1:4222", controlReplicas = 3 }
      admin = { tokenFile = "/etc/gojinn/admin.token" }
      audit = { keyFile = "/etc/gojinn/audit.key", node = "gj-3" }
    }
    error_message = "gojinn.yaml of gj-3: ${output.gojinn_configs["gj-3"]}"
  }
  assert {
    condition     = alltrue([for config in values(output.gojinn_configs) : !strcontains(config, "admin-token-for-tests") && !strcontains(config, "00112233445566778899")])
    error_message = "gojinn.yaml names the secret files and never holds a secret"
  }
  assert {
    condition     = output.http_urls == { "gj-1" = "http://10.0.0.1:8080", "gj-2" = "http://10.0.0.2:8080", "gj-3" = "http://10.0.0.3:8080" }
    error_message = "http_urls: ${jsonencode(output.http_urls)}"
  }
}

run "units_are_confined_and_cloud_init_installs_everything" {
  command = plan

  assert {
    condition = alltrue([for line in [
      "User=gojinn", "ExecStart=/usr/local/bin/gojinn serve --config /etc/gojinn/gojinn.yaml", "Restart=on-failure",
      "StateDirectory=gojinn", "CapabilityBoundingSet=\n", "ProtectSystem=strict", "NoNewPrivileges=yes",
      "MemoryDenyWriteExecute=no", "SystemCallFilter=@system-service", "Requires=nats-server.service",
    ] : strcontains(output.systemd_units["gj-1"]["gojinn.service"], line)])
    error_message = "gojinn.service: ${output.systemd_units["gj-1"]["gojinn.service"]}"
  }
  assert {
    condition     = strcontains(output.systemd_units["gj-1"]["nats-server.service"], "ExecStart=/usr/local/bin/nats-server --config /etc/nats/nats-server.conf")
    error_message = "nats-server.service starts nats-server with the rendered configuration"
  }
  assert {
    condition     = startswith(output.user_data["gj-1"], "#cloud-config\n")
    error_message = "user_data is a cloud-config document"
  }
  assert {
    condition = toset([for file in yamldecode(trimprefix(output.user_data["gj-1"], "#cloud-config\n")).write_files : "${file.path} ${file.permissions} ${file.owner}"]) == toset([
      "/etc/nats/nats-server.conf 0600 nats:nats",
      "/etc/gojinn/gojinn.yaml 0644 root:root",
      "/etc/gojinn/admin.token 0600 gojinn:gojinn",
      "/etc/gojinn/audit.key 0600 gojinn:gojinn",
      "/etc/systemd/system/nats-server.service 0644 root:root",
      "/etc/systemd/system/gojinn.service 0644 root:root",
    ])
    error_message = "cloud-init writes the configurations, the secrets (readable by their service only) and the units"
  }
  assert {
    condition     = contains(yamldecode(trimprefix(output.user_data["gj-1"], "#cloud-config\n")).runcmd, "systemctl enable --now nats-server.service gojinn.service")
    error_message = "cloud-init starts both services"
  }
}

run "a_single_node_runs_jetstream_without_routes" {
  command = plan

  variables {
    nodes    = [{ name = "solo", address = "192.168.1.10" }]
    replicas = 1
  }

  assert {
    condition     = !strcontains(output.nats_configs["solo"], "cluster {") && strcontains(output.nats_configs["solo"], "jetstream {")
    error_message = "a single node has JetStream and no cluster block"
  }
}

run "a_node_root_prefixes_every_path_and_ipv6_addresses_are_bracketed" {
  command = plan

  variables {
    nodes = [
      { name = "a", address = "fd00::1", nats_client_address = "::1", root = "/srv/a" },
      { name = "b", address = "fd00::2", nats_client_address = "::1", root = "/srv/b" },
      { name = "c", address = "fd00::3", nats_client_address = "::1", root = "/srv/c" },
    ]
  }

  assert {
    condition     = yamldecode(output.gojinn_configs["b"]).listen == "[fd00::2]:8080" && yamldecode(output.gojinn_configs["b"]).state.natsUrl == "nats://[::1]:4222"
    error_message = "IPv6 listen and NATS addresses are bracketed"
  }
  assert {
    condition     = strcontains(output.nats_configs["a"], "@[fd00::2]:6222\"")
    error_message = "IPv6 routes are bracketed"
  }
  assert {
    condition     = toset(keys(output.files["c"])) == toset(["/srv/c/etc/nats/nats-server.conf", "/srv/c/etc/gojinn/gojinn.yaml", "/srv/c/etc/gojinn/admin.token", "/srv/c/etc/gojinn/audit.key", "/srv/c/etc/systemd/system/nats-server.service", "/srv/c/etc/systemd/system/gojinn.service"])
    error_message = "every file of node c is under its root"
  }
  assert {
    condition     = yamldecode(output.gojinn_configs["c"]).dataDir == "/srv/c/var/lib/gojinn" && strcontains(output.nats_configs["c"], "store_dir: \"/srv/c/var/lib/nats/jetstream\"")
    error_message = "data directories are under the node's root"
  }
}
