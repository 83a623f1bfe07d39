# Renders, for every node of a gojinn cluster, the nats-server configuration (JetStream, routes to
# every other node, route authentication), gojinn.yaml, the two systemd units and a cloud-init
# document that installs them. It creates nothing: any provider's machines (aws_instance,
# hcloud_server, libvirt, ...) take `user_data`, or the files and units as they are.

locals {
  # host:port, with IPv6 addresses bracketed.
  host_port = { for node in var.nodes : node.name => {
    http    = format(strcontains(node.address, ":") ? "[%s]:%d" : "%s:%d", node.address, var.ports.http)
    client  = format(strcontains(node.nats_client_address, ":") ? "[%s]:%d" : "%s:%d", node.nats_client_address, var.ports.nats_client)
    cluster = format(strcontains(node.address, ":") ? "[%s]:%d" : "%s:%d", node.address, var.ports.nats_cluster)
    monitor = format(strcontains(node.nats_client_address, ":") ? "[%s]:%d" : "%s:%d", node.nats_client_address, var.ports.nats_monitor)
  } }

  # Where each node keeps its files (its root prefixed: empty on a machine of its own).
  paths = { for node in var.nodes : node.name => {
    nats_config   = "${node.root}/etc/nats/nats-server.conf"
    nats_data     = "${node.root}/var/lib/nats"
    gojinn_config = "${node.root}/etc/gojinn/gojinn.yaml"
    admin_token   = "${node.root}/etc/gojinn/admin.token"
    audit_key     = "${node.root}/etc/gojinn/audit.key"
    gojinn_data   = "${node.root}/var/lib/gojinn"
  } }

  route_credentials = "gojinn-route:${urlencode(var.nats_route_password)}"

  nats_configs = { for node in var.nodes : node.name => templatefile("${path.module}/templates/nats-server.conf.tftpl", {
    name           = node.name
    address        = node.address
    client_address = node.nats_client_address
    client_port    = var.ports.nats_client
    cluster_port   = var.ports.nats_cluster
    monitor_listen = local.host_port[node.name].monitor
    store_dir      = "${local.paths[node.name].nats_data}/jetstream"
    cluster_name   = var.cluster_name
    route_password = var.nats_route_password
    routes = [
      for other in var.nodes : "nats-route://${local.route_credentials}@${local.host_port[other.name].cluster}"
      if other.name != node.name
    ]
  }) }

  gojinn_settings = { for node in var.nodes : node.name => merge({
    listen  = local.host_port[node.name].http
    dataDir = local.paths[node.name].gojinn_data
    watch   = true
    reconcile = {
      git             = var.spec_source.git
      ref             = var.spec_source.ref
      interval        = var.spec_source.interval
      defaultPolicies = var.spec_source.default_policies
    }
    state = {
      backend         = "nats"
      natsUrl         = "nats://${local.host_port[node.name].client}"
      controlReplicas = var.replicas
    }
    admin = { tokenFile = local.paths[node.name].admin_token }
    audit = {
      keyFile = local.paths[node.name].audit_key
      node    = node.name
    }
  }, var.extra_settings) }

  units = { for node in var.nodes : node.name => {
    "nats-server.service" = templatefile("${path.module}/templates/nats-server.service.tftpl", {
      name               = node.name
      nats_server_binary = var.nats_server_binary
      config             = local.paths[node.name].nats_config
    })
    "gojinn.service" = templatefile("${path.module}/templates/gojinn.service.tftpl", {
      name          = node.name
      gojinn_binary = var.gojinn_binary
      config        = local.paths[node.name].gojinn_config
      data_dir      = local.paths[node.name].gojinn_data
    })
  } }

  # Every file a node needs, by absolute path: content, mode and owner (secrets readable by their
  # service's user only).
  files = { for node in var.nodes : node.name => merge(
    {
      (local.paths[node.name].nats_config)   = { content = local.nats_configs[node.name], permissions = "0600", owner = "nats:nats" }
      (local.paths[node.name].gojinn_config) = { content = yamlencode(local.gojinn_settings[node.name]), permissions = "0644", owner = "root:root" }
      (local.paths[node.name].admin_token)   = { content = var.admin_token, permissions = "0600", owner = "gojinn:gojinn" }
      (local.paths[node.name].audit_key)     = { content = var.audit_key, permissions = "0600", owner = "gojinn:gojinn" }
    },
    { for unit, text in local.units[node.name] :
    "${node.root}/etc/systemd/system/${unit}" => { content = text, permissions = "0644", owner = "root:root" } }
  ) }

  user_data = { for node in var.nodes : node.name => "#cloud-config\n${yamlencode({
    users = [
      "default",
      { name = "nats", system = true, shell = "/usr/sbin/nologin", no_create_home = true },
      { name = "gojinn", system = true, shell = "/usr/sbin/nologin", no_create_home = true },
    ]
    # Deferred: written once the users above exist.
    write_files = [for path, file in local.files[node.name] : {
      path        = path
      content     = file.content
      permissions = file.permissions
      owner       = file.owner
      defer       = true
    }]
    runcmd = concat(var.bootstrap_commands, [
      "systemctl daemon-reload",
      "systemctl enable --now nats-server.service gojinn.service",
    ])
  })}" }
}
