# A real 3-node gojinn cluster on this machine, from the files the gojinn-cluster module renders:
# three nats-servers with JetStream and authenticated routes, and three gojinn nodes sharing them,
# on the loopback addresses 127.0.0.11-13, all reconciling one git repository of the example
# functions. Only built-in resources: `terraform destroy` stops every process and removes the
# work directory.

terraform {
  required_version = ">= 1.9"
}

locals {
  repo_root     = abspath("${path.module}/../../..")
  work_dir      = var.work_dir != "" ? var.work_dir : abspath("${path.module}/.cluster")
  gojinn_binary = var.gojinn_binary != "" ? var.gojinn_binary : "${local.repo_root}/target/release/gojinn"
  scripts       = abspath("${path.module}/scripts")
  names         = ["n1", "n2", "n3"]
  nodes = [for index, name in local.names : {
    name                = name
    address             = "127.0.0.${11 + index}"
    nats_client_address = "127.0.0.${11 + index}"
    root                = "${local.work_dir}/${name}"
  }]
  ports = { http = 18080, nats_client = 14222, nats_cluster = 16222, nats_monitor = 18222 }
}

module "cluster" {
  source = "../../modules/gojinn-cluster"

  nodes               = local.nodes
  replicas            = 3
  spec_source         = { git = "${local.work_dir}/specs", ref = "main", interval = "10s" }
  admin_token         = var.admin_token
  audit_key           = var.audit_key
  nats_route_password = var.nats_route_password
  ports               = local.ports
  gojinn_binary       = local.gojinn_binary
  nats_server_binary  = var.nats_server_binary
}

resource "terraform_data" "work_dir" {
  input = local.work_dir

  provisioner "local-exec" {
    command = "mkdir -p '${self.input}'"
  }
  provisioner "local-exec" {
    when    = destroy
    command = "rm -rf '${self.input}'"
  }
}

# The example functions, built, pinned by sha256 and committed to a git repository.
resource "terraform_data" "spec_repository" {
  depends_on = [terraform_data.work_dir]
  input = {
    examples   = "${local.repo_root}/examples"
    repository = "${local.work_dir}/specs"
  }

  provisioner "local-exec" {
    command = "'${local.scripts}/spec-repository.sh' '${self.input.examples}' '${self.input.repository}'"
  }
}

# Each node's rendered files, written under its root (secrets included, mode 0600).
resource "terraform_data" "files" {
  for_each   = toset(local.names)
  depends_on = [terraform_data.work_dir]
  input      = module.cluster.files[each.key]

  provisioner "local-exec" {
    command     = "'${local.scripts}/node.sh' write-files"
    environment = { GOJINN_NODE_FILES = jsonencode(self.input) }
  }
}

resource "terraform_data" "nats_server" {
  for_each   = toset(local.names)
  depends_on = [terraform_data.files]
  input = {
    root    = "${local.work_dir}/${each.key}"
    binary  = var.nats_server_binary
    monitor = "http://127.0.0.${11 + index(local.names, each.key)}:${local.ports.nats_monitor}"
    node_sh = "${local.scripts}/node.sh"
  }

  provisioner "local-exec" {
    command = "'${local.scripts}/node.sh' start-nats '${self.input.root}' '${self.input.binary}' '${self.input.monitor}'"
  }
  provisioner "local-exec" {
    when    = destroy
    command = "'${self.input.node_sh}' stop '${self.input.root}/run/nats-server.pid' nats-server"
  }
}

# JetStream is usable once the three servers have elected a meta leader.
resource "terraform_data" "jetstream" {
  depends_on = [terraform_data.nats_server]
  input      = [for name, server in terraform_data.nats_server : server.input.monitor]

  provisioner "local-exec" {
    command = "'${local.scripts}/node.sh' wait-jetstream ${join(" ", self.input)}"
  }
}

resource "terraform_data" "gojinn" {
  for_each   = toset(local.names)
  depends_on = [terraform_data.jetstream, terraform_data.spec_repository]
  input = {
    root    = "${local.work_dir}/${each.key}"
    binary  = local.gojinn_binary
    url     = module.cluster.http_urls[each.key]
    node_sh = "${local.scripts}/node.sh"
  }

  provisioner "local-exec" {
    command = "'${local.scripts}/node.sh' start-gojinn '${self.input.root}' '${self.input.binary}' '${self.input.url}'"
  }
  provisioner "local-exec" {
    when    = destroy
    command = "'${self.input.node_sh}' stop '${self.input.root}/run/gojinn.pid' gojinn"
  }
}
