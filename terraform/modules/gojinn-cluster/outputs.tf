output "http_urls" {
  description = "Each node's gojinn base URL, by node name (its private address)."
  value       = { for node in var.nodes : node.name => "http://${local.host_port[node.name].http}" }
}

output "gojinn_configs" {
  description = "Each node's gojinn.yaml, by node name. It names the secret files, never their content."
  value       = { for name, settings in local.gojinn_settings : name => yamlencode(settings) }
}

output "nats_configs" {
  description = "Each node's nats-server.conf, by node name (holds the route password)."
  value       = local.nats_configs
  sensitive   = true
}

output "systemd_units" {
  description = "Each node's systemd units, by node name, then unit name (nats-server.service, gojinn.service)."
  value       = local.units
}

output "files" {
  description = "Every file each node needs, by node name, then absolute path: content, permissions, owner. Secrets included."
  value       = local.files
  sensitive   = true
}

output "user_data" {
  description = "Each node's cloud-init document (#cloud-config), by node name: users, files, units, start. Secrets included."
  value       = local.user_data
  sensitive   = true
}
