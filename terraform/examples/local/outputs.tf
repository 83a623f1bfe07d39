output "node_urls" {
  description = "Each node's base URL, by node name."
  value       = module.cluster.http_urls
}

output "admin_token_file" {
  description = "A file holding the admin token (the same on every node)."
  value       = "${local.work_dir}/n1/etc/gojinn/admin.token"
}

output "work_dir" {
  description = "The nodes' files, data (var/lib) and logs (var/log), one directory per node."
  value       = local.work_dir
}
