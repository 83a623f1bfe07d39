# Variable sets that cannot form a cluster are refused at plan, naming the variable.

variables {
  nodes = [
    { name = "gj-1", address = "10.0.0.1" },
    { name = "gj-2", address = "10.0.0.2" },
    { name = "gj-3", address = "10.0.0.3" },
  ]
  replicas            = 3
  spec_source         = { git = "https://git.example.com/ops/functions.git" }
  admin_token         = "admin-token-for-tests-0123456789abcdef"
  audit_key           = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
  nats_route_password = "route-password-for-tests"
}

run "replicas_3_with_2_nodes_is_refused" {
  command = plan
  variables {
    nodes = [
      { name = "gj-1", address = "10.0.0.1" },
      { name = "gj-2", address = "10.0.0.2" },
    ]
  }
  expect_failures = [var.replicas]
}

run "an_even_replica_count_is_refused" {
  command = plan
  variables {
    replicas = 2
  }
  expect_failures = [var.replicas]
}

run "duplicate_node_names_are_refused" {
  command = plan
  variables {
    nodes = [
      { name = "gj-1", address = "10.0.0.1" },
      { name = "gj-1", address = "10.0.0.2" },
      { name = "gj-3", address = "10.0.0.3" },
    ]
  }
  expect_failures = [var.nodes]
}

run "an_address_that_is_not_an_ip_is_refused" {
  command = plan
  variables {
    nodes = [
      { name = "gj-1", address = "10.0.0.1" },
      { name = "gj-2", address = "node-2.internal" },
      { name = "gj-3", address = "10.0.0.3/24" },
    ]
  }
  expect_failures = [var.nodes]
}

run "a_node_name_that_cannot_name_a_nats_server_is_refused" {
  command = plan
  variables {
    nodes = [
      { name = "gj-1", address = "10.0.0.1" },
      { name = "GJ 2", address = "10.0.0.2" },
      { name = "gj-3", address = "10.0.0.3" },
    ]
  }
  expect_failures = [var.nodes]
}

run "no_nodes_are_refused" {
  command = plan
  variables {
    nodes    = []
    replicas = 1
  }
  expect_failures = [var.nodes]
}

run "a_short_admin_token_is_refused" {
  command = plan
  variables {
    admin_token = "changeme"
  }
  expect_failures = [var.admin_token]
}

run "an_audit_key_that_is_not_64_hex_digits_is_refused" {
  command = plan
  variables {
    audit_key = "not-hex-at-all"
  }
  expect_failures = [var.audit_key]
}

run "a_bad_reconcile_interval_is_refused" {
  command = plan
  variables {
    spec_source = { git = "https://git.example.com/ops/functions.git", interval = "every minute" }
  }
  expect_failures = [var.spec_source]
}

run "colliding_ports_are_refused" {
  command = plan
  variables {
    ports = { http = 4222 }
  }
  expect_failures = [var.ports]
}
